"""Exit codes and the one `error:` line every command ends a refusal with."""

from __future__ import annotations

from rich.console import Console

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MESSAGE_LIMIT = 2000


def print_error(err: Console, exc: Exception | str) -> None:
    """One line: the message names keys and paths from files, so control characters in
    them are shown as escapes (a newline must not make it two lines)."""
    from diagnostics.untrusted import plain

    err.print(f"error: {plain(exc, MESSAGE_LIMIT)}", markup=False, highlight=False,
              soft_wrap=True)
