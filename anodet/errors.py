"""The one exception type the CLI turns into a readable line and exit code 2."""


class AnodetError(Exception):
    """A user-facing error: bad input, missing file, unavailable backend.

    The message must be one readable sentence that names the file or option at fault
    and, where there is a choice, lists the valid options.
    """


class CaptureError(AnodetError):
    """A capture that failed; ``failure`` is its cause without the note on what was kept
    (a caller that removes the capture folder must not point users at it)."""

    def __init__(self, message: str, failure: str):
        super().__init__(message)
        self.failure = failure
