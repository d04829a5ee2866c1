"""`python -m anodet.cli`: the `anodet` command."""

from anodet.cli import main

main()
