"""What one repair is asked to do, checked in one place before any work.

`RepairOptions` holds every choice of `repair` (and of `python -m diagnostics
repair`); making one checks them all: an empty output path, export sizes or
verification shapes that are no sizes, expected dims that are no dims, inputs
that are no list of `.npz` paths or dicts, a memory budget that is no size. A
run with a bad option stops before its model is read. What needs the model too
(an output that is the input, inputs that are not the model's) is checked once
it is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..checker import memory_budget
from ..errors import OutputPathError, ShapeSpecError
from ..limits import MAX_BATCH, MAX_SEQUENCE, MAX_TOKENS


@dataclass(frozen=True)
class RepairOptions:
    """Every choice of one repair; made only valid (else a `DiagnosticsError`).

    Attributes:
        output: where to write (never the input; a folder gets `model.onnx`). None:
            verify in memory, write nothing.
        dry_run: plan and prove the plan statically; no writing, no onnxruntime.
        dummy: export sizes by symbol, as for `check` ({"batch": 2, "sequence": 8}).
        shapes: extra (batch, sequence) shapes to verify at, besides the built-in ones.
        keep_failed: write the output even when the repair is not proved (refusals,
            frozen shapes left, or a failed verification); by default nothing is written then.
        expect: the input dims the user expects, as for `check`.
        inputs: verify on these inputs (`.npz` paths or dicts of arrays) instead of built ones.
        max_memory: the most bytes one input may need, as for `check` (bytes, or "8G").
        budget: `max_memory` in bytes (set from it).

    Raises:
        OutputPathError: an output path that is empty or not a path.
        ShapeSpecError: sizes, shapes, dims or inputs that are not what they should be,
            or a `max_memory` that is no size.
    """

    output: str | os.PathLike[str] | None = None
    dry_run: bool = False
    dummy: Mapping[str, int] | None = None
    shapes: Sequence[tuple[int, int]] | None = None
    keep_failed: bool = False
    expect: Mapping[str, Sequence[int | str]] | None = None
    inputs: Sequence[str | os.PathLike[str] | Mapping] | None = None
    max_memory: int | str | None = None
    budget: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_output(self.output)
        if self.dummy is not None:
            object.__setattr__(self, "dummy", _dummy(self.dummy))
        if self.shapes is not None:
            object.__setattr__(self, "shapes", _shapes(self.shapes))
        if self.expect is not None:
            object.__setattr__(self, "expect", _expect(self.expect))
        if self.inputs is not None:
            object.__setattr__(self, "inputs", _inputs(self.inputs))
        object.__setattr__(self, "budget", memory_budget(self.max_memory))


def _check_output(output: object) -> None:
    if output is None:
        return
    if not isinstance(output, str | os.PathLike):
        raise OutputPathError(f"output {output!r} is not a path; name a file or a folder")
    if not os.fspath(output):
        raise OutputPathError("the output path is empty; name a file or a folder")


def _whole(value: object, least: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _dummy(dummy: object) -> dict[str, int]:
    if not isinstance(dummy, Mapping):
        raise ShapeSpecError(f"dummy is a {type(dummy).__name__}, not sizes by symbol, e.g. "
                             "{'batch': 2, 'sequence': 8}")
    for name, size in dummy.items():
        if not isinstance(name, str) or not name or not _whole(size):
            raise ShapeSpecError(f"dummy {name!r}: {size!r} is no size (a whole number, at "
                                 "least 1, by symbol name)")
    return dict(dummy)


def _shapes(shapes: object) -> tuple[tuple[int, int], ...]:
    if isinstance(shapes, str | bytes) or not isinstance(shapes, Sequence):
        raise ShapeSpecError(f"shapes is a {type(shapes).__name__}, not a list of (batch, "
                             "sequence) pairs")
    for shape in shapes:
        if (not isinstance(shape, Sequence) or len(shape) != 2
                or not all(_whole(n) for n in shape)):
            raise ShapeSpecError(f"shape {shape!r} is not a (batch, sequence) pair of whole "
                                 "numbers of at least 1")
        batch, sequence = shape
        if batch > MAX_BATCH or sequence > MAX_SEQUENCE or batch * sequence > MAX_TOKENS:
            raise ShapeSpecError(f"shape {tuple(shape)} is out of range (batch up to "
                                 f"{MAX_BATCH}, sequence up to {MAX_SEQUENCE}, {MAX_TOKENS} "
                                 "tokens in all)")
    return tuple((int(b), int(s)) for b, s in shapes)


def _expect(expect: object) -> dict[str, tuple[int | str, ...]]:
    if not isinstance(expect, Mapping):
        raise ShapeSpecError(f"expect is a {type(expect).__name__}, not dims by input name, e.g. "
                             "{'pixel_values': ('batch', 3, 'height', 'width')}")
    for name, dims in expect.items():
        if (not isinstance(name, str) or isinstance(dims, str | bytes)
                or not isinstance(dims, Sequence)
                or not all((isinstance(d, str) and d) or _whole(d, least=0) for d in dims)):
            raise ShapeSpecError(f"expect {name!r}: {dims!r} is not a list of dims (a name "
                                 "for a dynamic dim, a whole number for a static one)")
    return {name: tuple(dims) for name, dims in expect.items()}


def _inputs(inputs: object) -> tuple[str | os.PathLike[str] | Mapping, ...]:
    if isinstance(inputs, str | bytes | os.PathLike | Mapping) or not isinstance(inputs,
                                                                                 Sequence):
        raise ShapeSpecError(f"inputs is a {type(inputs).__name__}, not a list of .npz paths or "
                             "dicts of arrays (one input is a list of one)")
    for item in inputs:
        if not isinstance(item, str | os.PathLike | Mapping):
            raise ShapeSpecError(f"inputs: a {type(item).__name__} is neither a .npz path nor "
                                 "a dict of arrays")
    return tuple(dict(item) if isinstance(item, Mapping) else item for item in inputs)
