"""Limits as data: every size a file or a flag declares is checked before work.

A hostile file can declare a tensor of 2**40 rows, a 100,000-layer config or a
probe batch of 10**11; allocating what it declares is how a run dies (or takes
the machine with it). The rule: compute what a declared size would cost, compare
it with the run's memory budget, and refuse in one line naming the value and
the limit. The budget defaults to half the memory this machine has available
(at most 64 GiB) and is raised with `--max-memory` or `SUBGRAFT_MAX_MEMORY`.
Symbolic analysis is bounded too: past `MAX_EXPR_TERMS` a value is not judged.

Both packages use this module (the extractor imports it): errors are returned as
text, and each package raises its own error type with it.
"""

from __future__ import annotations

import os
import re

ENV_VAR = "SUBGRAFT_MAX_MEMORY"
_CEILING = 64 * 2**30
_FLOOR = 256 * 2**20
# A symbolic size with more terms than this is "not judged": the arithmetic of a hostile
# graph (v = v + v*v, 64 times) grows without bound, a real model's stays tiny.
MAX_EXPR_TERMS = 64
MAX_EXPR_DEGREE = 8
# numpy's limit on dims: a tensor of more cannot be built, fed or read; past it a rank is unknown.
MAX_RANK = 64
# Integer tensors up to this many elements carry their values through the analysis (shapes,
# indices); a longer one is data, and only its shape is followed.
MAX_VALUES = 64
# Beyond these a probe input alone would not fit in memory: a typo, not a shape (also the
# largest export dummy a model's metadata may declare).
MAX_BATCH, MAX_SEQUENCE, MAX_TOKENS = 4096, 1 << 20, 1 << 24
# JSON nested deeper than this is refused before it is parsed (real configs nest < 10).
MAX_JSON_DEPTH = 64
MAX_JSON_BYTES = 64 * 2**20

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20,
          "mib": 2**20, "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40,
          "tib": 2**40}


def parse_size(text: str) -> int:
    """`8G`, `512MiB`, `1.5g`, `1000000` -> bytes; raises ValueError with a one-line reason."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise ValueError(f"not a size: {str(text)[:40]!r} (write e.g. 8G, 512M or 1000000)")
    value = int(float(match.group(1)) * _UNITS[unit])
    if value < 1:
        raise ValueError(f"not a size: {str(text)[:40]!r} (it must be positive)")
    return value


def available_memory() -> int:
    """Bytes this machine can still give (MemAvailable), or its total memory where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def default_max_memory() -> int:
    """Half of what is available, between 256 MiB and 64 GiB (`SUBGRAFT_MAX_MEMORY` wins)."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        try:
            return parse_size(configured)
        except ValueError:
            pass  # a bad variable must not stop a run; the default below applies
    return max(_FLOOR, min(_CEILING, available_memory() // 2))


def max_memory(given: int | str | None = None) -> int:
    """The run's budget: `given` (bytes or text such as 8G), else the default."""
    if given is None:
        return default_max_memory()
    return given if isinstance(given, int) else parse_size(given)


def too_large(what: str, nbytes: int, budget: int | None = None) -> str | None:
    """None when `nbytes` fits the budget, else the one-line reason to refuse."""
    limit = max_memory(budget)
    if nbytes <= limit:
        return None
    return (f"{what} would need {human(nbytes)}, over the memory limit of {human(limit)} "
            f"(raise it with --max-memory or {ENV_VAR})")


def human(nbytes: int | float) -> str:
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} EiB"


def product(values) -> int:
    """The product of dims as a Python int (never a numpy overflow)."""
    total = 1
    for value in values:
        total *= int(value)
    return total


def json_depth_problem(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> str | None:
    """A reason to refuse JSON nested deeper than `limit`, found without parsing it: a
    running sum over the brackets outside strings (numpy; about 0.1 s for 17 MB)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if len(data) > MAX_JSON_BYTES:
        return f"JSON of {human(len(data))} is over the {human(MAX_JSON_BYTES)} a config may take"
    if data.count(b"[") + data.count(b"{") <= limit:
        return None  # it cannot nest deeper than it has brackets
    import numpy as np

    table = np.zeros(256, dtype=np.int8)
    table[[0x22, 0x5C, 0x5B, 0x7B, 0x5D, 0x7D]] = [1, 2, 3, 3, 4, 4]  # " \ [ { ] }
    codes = table[np.frombuffer(data, dtype=np.uint8)]
    where = np.flatnonzero(codes)
    kinds = codes[where]
    live = np.ones(len(kinds), dtype=bool)  # False: escaped by a backslash before it
    escaping = -2
    for index in np.flatnonzero(kinds == 2).tolist():  # few in real JSON
        if live[index] and where[index] != escaping:
            escaping = where[index] + 1
            if index + 1 < len(kinds) and where[index + 1] == escaping:
                live[index + 1] = False
    quote = (kinds == 1) & live
    inside = (np.cumsum(quote) % 2 == 1) & ~quote
    step = np.where(inside, 0, np.where(kinds == 3, 1, np.where(kinds == 4, -1, 0)))
    if len(step) and int(np.cumsum(step).max()) > limit:
        return f"JSON nested more than {limit} deep"
    return None
