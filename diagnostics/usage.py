"""Command-line usage errors for both packages' `__main__`: the command's usage line,
then one `error:` line, exit 2 (argparse's own `error` would exit the process, and
reports a command's unknown options against the top-level parser)."""

from __future__ import annotations

import argparse

from rich.console import Console

from .untrusted import plain


class UsageError(Exception):
    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.usage = usage


class Parser(argparse.ArgumentParser):
    """Raises UsageError instead of exiting, so `main()` returns its exit code."""

    def error(self, message: str) -> None:
        raise UsageError(f"{self.prog}: {message}", self.format_usage().strip())


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(found[0].choices) if found else {}


def command_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    return _commands(parser)[name]


def for_command(exc: UsageError, parser: argparse.ArgumentParser, argv: list[str]
                ) -> UsageError:
    """The error told against the command the user named, where argparse told it
    against the top-level parser (`unrecognized arguments` of a command)."""
    command = _commands(parser).get(argv[0]) if argv else None
    if command is None or not str(exc).startswith(f"{parser.prog}: "):
        return exc
    return UsageError(f"{command.prog}: {str(exc).split(': ', 1)[-1]}",
                      command.format_usage().strip())


def print_usage_error(err: Console, exc: Exception, limit: int = 2000) -> None:
    """Two lines: the usage (joined into one), then the error, escaped."""
    usage = getattr(exc, "usage", "")
    if usage:
        err.print(" ".join(usage.split()), markup=False, highlight=False, soft_wrap=True)
    err.print(f"error: {plain(exc, limit)}", markup=False, highlight=False, soft_wrap=True)
