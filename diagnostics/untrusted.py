"""Text that came from a file is data, never markup or terminal control.

Node names, op types, metadata, paths, checkpoint keys and config values are
written by whoever made the file. Before rich renders them, `shown` escapes
rich's markup (`[/]`, `[link=...]`) and makes control characters visible
(`\\x1b`, `\\n`), so a name can neither break the renderer nor rewrite the
terminal; `plain` does the second only, for text printed with markup off. The CLIs
print through `console()`, which never turns `:name:` into an emoji (`:factory:` in a
`module:factory` reference, `:fire:` in a node name stay as written), and which,
writing to a file or a pipe, lays tables out on `PIPED_WIDTH` columns rather than
rich's 80, where a wide table's cells were cut to "subgra…".
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.markup import escape

_LIMIT = 400
PIPED_WIDTH = 200  # bench --peers' widest table, with its longest engine name


def console(stderr: bool = False) -> Console:
    """A console for the CLIs: rich's emoji codes are off, since text from files is data;
    not a terminal (and no COLUMNS set), `PIPED_WIDTH` columns."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and not os.environ.get("COLUMNS")
    return Console(stderr=stderr, emoji=False, width=PIPED_WIDTH if piped else None)


def plain(text: object, limit: int | None = _LIMIT) -> str:
    """`text` on one line with every control or invisible character written as an escape."""
    value = str(text)
    if limit is not None and len(value) > limit:
        value = value[:limit] + "..."
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else _visible(c) for c in value)


def shown(text: object, limit: int | None = _LIMIT) -> str:
    """`plain(text)` made safe to embed in rich markup."""
    return escape(plain(text, limit))


def _visible(char: str) -> str:
    if char == "\n":
        return "\\n"
    if char == "\t":
        return "\\t"
    if char == "\r":
        return "\\r"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else \
        f"\\U{code:08x}"
