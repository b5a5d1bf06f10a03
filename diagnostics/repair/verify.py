"""Prove a repair: same numbers at the export dummy, and runs everywhere else.

The original and repaired models run side by side at the export dummy shape (every
output must agree within 1e-5 of the original's scale); then both are probed at
shapes the dummy never had, including batch 1, a long sequence and (1, 34), with
the batch-invariance check. Returns data; never prints.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..analysis.signature import read_signature
from ..loading import LoadedModel
from ..probe.feeds import any_feed, text_feed, text_inputs, text_vocab
from ..probe.given import run_probe_feeds
from ..probe.run import default_shapes, default_sizes, first_line, run_probe, run_probe_any
from .results import Comparison, Verification

RTOL = 1e-5
REPORTED_FAILURE = (1, 34)  # the shape of the classic bug report


def verify_shapes(
    dummy: dict[str, int], extra: Sequence[tuple[int, int]] = (), longest: int | None = None
) -> list[tuple[int, int]]:
    """The probe's default shapes, (1, 34), and any the caller names; sequences at most
    `longest` (the rows of a position table the graph slices by the sequence)."""
    shapes = [*default_shapes(dummy), REPORTED_FAILURE, *extra]
    return list(dict.fromkeys((b, min(s, longest or s)) for b, s in shapes))


def verify(
    original: LoadedModel,
    repaired: LoadedModel,
    dummy: dict[str, int],
    shapes: Sequence[tuple[int, int]],
    feeds: Sequence[tuple[str, dict]] = (),
    budget: int | None = None,
) -> Verification:
    """`budget`: the most bytes a built input may take (`ResourceLimitError` past it)."""
    if original.weights == "missing":
        return Verification(skipped="the original's weights are not here to compare against")
    if feeds:
        return _verify_feeds(original, repaired, feeds)
    if isinstance(text_inputs(original.model), str):
        return _verify_any(original, repaired, dummy, budget)
    before = run_probe(original, (), shapes, budget=budget)
    after = run_probe(repaired, (), shapes, budget=budget)
    reference = (dummy.get("batch", 2), dummy.get("sequence", 8))
    notes = []
    ran = {(r.batch, r.sequence) for r in before.runs if r.ok}
    if reference not in ran and ran:
        fallback = next(s for s in shapes if s in ran)
        notes.append(
            f"the original fails at the dummy {reference[0]}x{reference[1]}: "
            f"compared at {fallback[0]}x{fallback[1]}, where it runs"
        )
        reference = fallback
    try:
        compared = _compare(original, repaired, *reference)
    except Exception as exc:  # onnxruntime's error types are not exported
        return Verification(
            (), before, after, notes=(*notes, f"compare failed: {first_line(exc)}")
        )
    return Verification(compared, before, after, notes=tuple(notes))


def _verify_any(original: LoadedModel, repaired: LoadedModel, dummy: dict[str, int],
                budget: int | None = None) -> Verification:
    """Any model: both probed at sizes per symbol, compared where the original runs."""
    trials = default_sizes(original.model, dummy)
    before = run_probe_any(original, (), trials, budget=budget)
    if before.skipped:
        return Verification(skipped=before.skipped)
    after = run_probe_any(repaired, (), trials, budget=budget)
    ran = [t for t, r in zip(trials, before.runs, strict=True) if r.ok]
    if not ran:
        return Verification((), before, after,
                            notes=("the original runs at none of the probe sizes: not compared",))
    feed, _ = any_feed(original.model, read_signature(original.model), ran[0], seed=7,
                       budget=budget)
    return _compared(original, repaired, before, after, ran[0].get("batch", 0), feed)


def _verify_feeds(original: LoadedModel, repaired: LoadedModel,
                  feeds: Sequence[tuple[str, dict]]) -> Verification:
    """Given inputs: both run on each, compared on the first the original runs."""
    before = run_probe_feeds(original, (), feeds)
    after = run_probe_feeds(repaired, (), feeds)
    ran = [(run, feed) for run, (_, feed) in zip(before.runs, feeds, strict=True) if run.ok]
    if not ran:
        return Verification((), before, after,
                            notes=("the original runs on none of the given inputs: not compared",))
    run, feed = ran[0]
    return _compared(original, repaired, before, after, run.batch, feed)


def _compared(original: LoadedModel, repaired: LoadedModel, before, after, batch: int,
              feed: dict[str, np.ndarray]) -> Verification:
    """Both probes, and the two models compared on `feed` (a probe input the original ran)."""
    try:
        compared = _compare(original, repaired, batch, 0, feed)
    except Exception as exc:  # onnxruntime's error types are not exported
        return Verification((), before, after, notes=(f"compare failed: {first_line(exc)}",))
    return Verification(compared, before, after)


def _compare(
    original: LoadedModel, repaired: LoadedModel, batch: int, sequence: int,
    feed: dict[str, np.ndarray] | None = None,
) -> tuple[Comparison, ...]:
    if feed is None:
        inputs = text_inputs(original.model)
        if isinstance(inputs, str):
            raise ValueError(inputs)
        feed = text_feed(inputs, batch, sequence, text_vocab(original.model, inputs), seed=7)
    want = _session(original).run(None, feed)
    got = _session(repaired).run(None, feed)
    names = [o.name for o in original.model.graph.output]
    out = []
    for name, a, b in zip(names, want, got, strict=True):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a64.shape != b64.shape:
            out.append(Comparison(batch, sequence, name, float("inf"), float("inf"), False))
            continue
        diff = float(np.abs(a64 - b64).max()) if a64.size else 0.0
        scale = float(np.abs(a64).max()) if a64.size else 0.0
        rel = diff / scale if scale else diff
        out.append(Comparison(batch, sequence, name, diff, rel, diff <= RTOL * max(scale, 1e-30)))
    return tuple(out)


def _session(loaded: LoadedModel):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    source = str(loaded.path) if loaded.path else loaded.model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
