"""Prove a graft: run the parent's own method with its sub-module and with the ONNX encoder.

Every output the parent returns is compared (tensors within tolerance, with argmax agreement
for logits; labels and other values exactly); `load_factory` finds graft-check's parent.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.modeling_outputs import ModelOutput

from ..errors import GraftError
from .encoder import OnnxEncoder
from .swap import grafted, locate, output_mismatch


@dataclass(frozen=True)
class OutputComparison:
    """One output of the parent: the original against the graft, over every batch."""

    name: str  # e.g. "['entity_logits']", "[0]", ".logits"
    kind: str  # "tensor" or "labels" (integers, or non-tensor values compared exactly)
    max_abs: float
    max_rel: float
    agreement: float | None  # share of equal predicted labels (argmax, or exact values)
    ok: bool


@dataclass
class GraftReport:
    """What `verify_graft` measured; `ok` when every output is within tolerance."""

    file: str
    batches: int
    atol: float
    rtol: float
    results: list[OutputComparison] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "batches": self.batches, "atol": self.atol,
                "rtol": self.rtol, "ok": self.ok,
                "results": [dataclasses.asdict(r) for r in self.results]}


def verify_graft(
    parent: torch.nn.Module,
    name: str,
    directory: str | Path | OnnxEncoder,
    batches: Sequence[Any],
    file: str = "model.onnx",
    atol: float = 1e-4,
    rtol: float = 1e-4,
    method: str = "forward",
) -> GraftReport:
    """Run the parent's own `method` on each batch with its sub-module and with the graft.

    A batch is a dict (keyword arguments), a tuple or list (positional arguments) or
    one tensor. Every tensor in what the parent returns (nested in tuples, lists,
    dicts or dataclasses) is compared; float tensors whose last dim is at least 2 are
    read as logits and their argmax agreement is reported too; integers and other
    values (CRF label paths) must be equal.
    """
    if not batches:
        raise GraftError("no batches to compare on")
    encoder = directory if isinstance(directory, OnnxEncoder) else OnnxEncoder(directory, file)
    refusal = output_mismatch(locate(parent, name)[2], encoder, name)
    if refusal:  # before the first pass: graft would refuse it after
        raise GraftError(refusal)
    parent.eval()
    run = getattr(parent, method)
    with torch.no_grad():
        expected = [_flatten(_call(run, batch)) for batch in batches]
        with grafted(parent, name, encoder):
            got = [_flatten(_call(run, batch)) for batch in batches]
    report = GraftReport(encoder.file, len(batches), atol, rtol)
    for key in expected[0]:
        pairs = [(e[key], g.get(key)) for e, g in zip(expected, got, strict=True)]
        report.results.append(_compare(key, pairs, atol, rtol))
    return report


def _call(run: Any, batch: Any) -> Any:
    if isinstance(batch, dict):
        return run(**batch)
    if isinstance(batch, (tuple, list)):
        return run(*batch)
    return run(batch)


def _flatten(value: Any, name: str = "") -> dict[str, Any]:
    if isinstance(value, torch.Tensor):
        return {name or "output": value}
    if isinstance(value, ModelOutput):
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{name}.{key}")
                .items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: v for f in dataclasses.fields(value)
                for k, v in _flatten(getattr(value, f.name), f"{name}.{f.name}").items()}
    if isinstance(value, dict):
        return {k: v for key, item in value.items()
                for k, v in _flatten(item, f"{name}[{key!r}]").items()}
    if isinstance(value, (tuple, list)) and any(_has_tensor(v) for v in value):
        return {k: v for i, item in enumerate(value)
                for k, v in _flatten(item, f"{name}[{i}]").items()}
    return {name or "output": value}


def _has_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_has_tensor(v) for v in value.values())
    return isinstance(value, ModelOutput) or dataclasses.is_dataclass(value)


def _compare(name: str, pairs: list[tuple[Any, Any]], atol: float, rtol: float
             ) -> OutputComparison:
    tensors = all(isinstance(e, torch.Tensor) for e, _ in pairs)
    if not tensors or not pairs[0][0].is_floating_point():
        same = [_equal(e, g) for e, g in pairs]
        agreement = float(np.mean([s for group in same for s in group])) if same else 1.0
        return OutputComparison(name, "labels", math.nan, math.nan, agreement,
                                agreement == 1.0)
    worst_abs = worst_rel = 0.0
    agree: list[np.ndarray] = []
    ok = True
    for expected, got in pairs:
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            return OutputComparison(name, "tensor", math.nan, math.nan, None, False)
        diff = (got.double() - expected.double()).abs()
        magnitude = expected.double().abs()
        worst_abs = max(worst_abs, float(diff.max()) if diff.numel() else 0.0)
        big = magnitude >= 1e-3
        if big.any():
            worst_rel = max(worst_rel, float((diff[big] / magnitude[big]).max()))
        ok = ok and bool((diff <= atol + rtol * magnitude).all())
        if expected.dim() >= 2 and expected.shape[-1] >= 2:
            agree.append((expected.argmax(-1) == got.argmax(-1)).numpy().ravel())
    agreement = float(np.concatenate(agree).mean()) if agree else None
    return OutputComparison(name, "tensor", worst_abs, worst_rel, agreement, ok)


def _equal(expected: Any, got: Any) -> list[bool]:
    """Element-wise equality of label outputs (tensors of ints, nested lists, scalars)."""
    if isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor):
        if expected.shape != got.shape:
            return [False]
        return (expected == got).numpy().ravel().tolist() or [True]
    if isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)):
        if len(expected) != len(got):
            return [False]
        return [s for e, g in zip(expected, got, strict=True) for s in _equal(e, g)] or [True]
    return [expected == got]


def load_factory(spec: str) -> Any:
    """`package.module:function` -> the function (the current directory is importable)."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise GraftError(f"--parent {spec!r} is not MODULE:FACTORY")
    import sys

    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise GraftError(f"cannot import {module_name!r} for --parent: {exc}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise GraftError(f"{module_name} has no callable {attribute!r}")
    return factory
