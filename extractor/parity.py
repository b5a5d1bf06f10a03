"""Prove an export right: PyTorch and onnxruntime agree at shapes the dummy never had.

A frozen dummy shape passes at the dummy's own size and fails (or silently mixes
rows) elsewhere, so every case differs from the dummy in batch and sequence:
batch 1, a long sequence, and padded attention masks. PyTorch references are
computed first so the caller can free the model before onnxruntime loads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4
_REL_FLOOR = 1e-3  # relative differences are measured where the reference is at least this


@dataclass(frozen=True)
class ParityCase:
    """One input shape to compare at."""

    name: str
    batch: int
    sequence: int
    padded: bool


@dataclass(frozen=True)
class ParityResult:
    """The comparison of one output at one case."""

    case: str
    batch: int
    sequence: int
    output: str
    max_abs: float
    max_rel: float
    ok: bool
    error: str | None = None


@dataclass
class ParityReport:
    atol: float
    rtol: float
    results: list[ParityResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results)

    @property
    def failures(self) -> list[ParityResult]:
        return [r for r in self.results if not r.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "atol": self.atol,
            "rtol": self.rtol,
            "ok": self.ok,
            "results": [asdict(r) for r in self.results],
        }


@dataclass
class Reference:
    """Inputs for one case and the PyTorch outputs for them."""

    case: ParityCase
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


def parity_cases(config: Any, dummy_batch: int, dummy_sequence: int) -> list[ParityCase]:
    """Five shapes, none sharing a batch or sequence with the export dummy."""
    limit = (getattr(config, "max_position_embeddings", 512) or 512) - 2  # RoBERTa's offset
    wanted = [
        ("batch 1", 1, 9, False),
        ("long", 2, 160, False),
        ("padded", 4, 33, True),
        ("padded, short", 6, 5, True),
        ("long, padded", 3, 128, True),
    ]
    cases = []
    for name, batch, sequence, padded in wanted:
        sequence = min(sequence, limit)
        while sequence == dummy_sequence or sequence < 2:
            sequence = sequence - 1 if sequence > 2 else sequence + 1
        if batch == dummy_batch:
            batch += 1
        cases.append(ParityCase(name, batch, sequence, padded))
    return cases


def case_inputs(
    config: Any, input_names: list[str], case: ParityCase, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random ids; padded rows get the pad id and a zero mask past their length."""
    rng = np.random.default_rng(seed)
    pad = getattr(config, "pad_token_id", 0) or 0
    ids = rng.integers(3, config.vocab_size, (case.batch, case.sequence), dtype=np.int64)
    mask = np.ones((case.batch, case.sequence), dtype=np.int64)
    if case.padded:
        for row in range(1, case.batch):
            length = max(1, case.sequence - row * max(1, case.sequence // case.batch))
            mask[row, length:] = 0
            ids[row, length:] = pad
    types = np.zeros_like(ids)
    if getattr(config, "type_vocab_size", 1) > 1:
        types[:, case.sequence // 2 :] = 1
    tensors = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    return {name: tensors[name] for name in input_names}


def reference_outputs(
    wrapper: torch.nn.Module,
    config: Any,
    input_names: list[str],
    output_names: list[str],
    cases: list[ParityCase],
) -> list[Reference]:
    """Run the PyTorch model (the export wrapper) at every case."""
    references = []
    with torch.no_grad():
        for index, case in enumerate(cases):
            inputs = case_inputs(config, input_names, case, seed=index)
            outputs = wrapper(*(torch.from_numpy(v) for v in inputs.values()))
            references.append(
                Reference(
                    case,
                    inputs,
                    {name: out.numpy() for name, out in zip(output_names, outputs, strict=True)},
                )
            )
    return references


def compare_onnx(
    onnx_path: str | Path,
    references: list[Reference],
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    threads: int | None = None,
) -> ParityReport:
    """Run onnxruntime on each reference's inputs; collect every difference and error."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    report = ParityReport(atol, rtol)
    for ref in references:
        case = ref.case
        try:
            got = dict(zip(names, session.run(None, ref.inputs), strict=True))
        except Exception as exc:  # onnxruntime raises its own untyped errors per node
            message = str(exc).strip().splitlines()[0][:300]
            report.results.extend(_failed(case, name, message) for name in ref.outputs)
            continue
        for name, expected in ref.outputs.items():
            report.results.append(_compare(case, name, got.get(name), expected, atol, rtol))
        # An output PyTorch does not give cannot be verified (e.g. a pooler the model lacks).
        report.results.extend(_failed(case, name, "not an output of the PyTorch model")
                              for name in names if name not in ref.outputs)
    return report


def _failed(case: ParityCase, output: str, error: str) -> ParityResult:
    nan = float("nan")
    return ParityResult(case.name, case.batch, case.sequence, output, nan, nan, False, error)


def _compare(
    case: ParityCase,
    name: str,
    actual: np.ndarray | None,
    expected: np.ndarray,
    atol: float,
    rtol: float,
) -> ParityResult:
    if actual is None:
        return _failed(case, name, "output missing from the ONNX model")
    if actual.shape != expected.shape:
        return _failed(case, name, f"shape {list(actual.shape)} vs PyTorch {list(expected.shape)}")
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    magnitude = np.abs(expected.astype(np.float64))
    big = magnitude >= _REL_FLOOR
    max_rel = float((diff[big] / magnitude[big]).max()) if big.any() else 0.0
    ok = bool(np.all(diff <= atol + rtol * magnitude)) and bool(np.isfinite(actual).all())
    return ParityResult(case.name, case.batch, case.sequence, name, float(diff.max()), max_rel, ok)
