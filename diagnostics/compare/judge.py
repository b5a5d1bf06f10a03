"""`compare()`: run both sides, measure each aligned module, name the first divergence.

A module agrees where every element is within `atol + rtol * |reference|` (numpy's
`allclose` rule). The first divergence is the first module in forward-completion
order (innermost first) whose output disagrees while its aligned inputs agree (or
none could be aligned): the module where the error starts, not the ones it flows into.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import onnx

from ..analysis.signature import METADATA
from ..analysis.source import node_source
from ..errors import ModelFileError, ShapeSpecError
from ..loading import LoadedModel, load_model
from ..probe.feeds import text_feed, text_inputs, text_vocab
from ..probe.given import load_feeds
from .align import FUSED, Scopes, build_scopes
from .capture import Call, capture_torch, float_types, run_exposed
from .causes import find_cause
from .reference import load_reference
from .results import CompareReport, Divergence, ModuleDiff, Unaligned

ATOL, RTOL = 1e-4, 1e-3

_MAX_NODES = 200


@dataclass
class _Stats:
    max_abs: float = 0.0
    scale: float = 0.0
    cosine: float = 1.0
    agrees: bool = True
    count: int = 0

    def add(self, onnx_value: np.ndarray, torch_value: np.ndarray, atol: float, rtol: float
            ) -> None:
        a, b = onnx_value.astype(np.float64), torch_value.astype(np.float64)
        diff = np.abs(a - b)
        diff[np.isnan(a) & np.isnan(b)] = 0.0
        diff[np.isnan(diff)] = np.inf
        if diff.size:
            self.max_abs = max(self.max_abs, float(diff.max()))
            self.scale = max(self.scale, float(np.nanmax(np.abs(b))))
            self.agrees &= bool(np.all(diff <= atol + rtol * np.abs(b)))
        self.cosine = min(self.cosine, _cosine(a, b))
        self.count += 1


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if not (np.isfinite(na) and np.isfinite(nb)) or na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a.reshape(-1), b.reshape(-1)) / (na * nb))


def compare(
    model: str | os.PathLike[str] | onnx.ModelProto,
    reference,
    inputs: Sequence | None = None,
    shapes: Sequence[tuple[int, int]] | None = None,
    atol: float = ATOL,
    rtol: float = RTOL,
    seed: int = 0,
    max_memory: int | str | None = None,
) -> CompareReport:
    """Compare `model` with `reference` (a Hugging Face model directory, `module:factory`
    or an `nn.Module`) module by module, on `inputs` (`.npz` files or dicts) or on text
    inputs built at `shapes` (BATCHxSEQUENCE pairs; default one pair the dummy never had).

    Raises:
        DiagnosticsError: a bad model, reference or inputs, or either side failing on them.
    """
    loaded = load_model(model)
    if loaded.weights == "missing":
        raise ModelFileError(f"{loaded.name}: weights not found ({', '.join(loaded.missing)})")
    module, reference_label = load_reference(reference)
    runs = _feeds(loaded, inputs, shapes, seed, max_memory)
    named = dict(module.named_modules())
    scopes = build_scopes(loaded.model, list(named))
    seen = _Measured()
    types, exposed = float_types(loaded.model), scopes.crossing()
    for _, feed in runs:
        # onnxruntime first, its session (a copy of every weight) gone before PyTorch's
        # forward touches the reference's; then each module is measured as its hook fires.
        values = run_exposed(loaded, feed, exposed, types)
        seen.add_run(module, feed, values, scopes, named, atol, rtol)
        del values
    diffs = []
    for call in seen.calls:
        if call.module in seen.chosen:
            out, inputs_seen = seen.outputs[call.module], seen.inputs[call.module]
            diffs.append(ModuleDiff(
                call.module, call.module_class, seen.chosen[call.module], out.max_abs,
                out.max_abs / out.scale if out.scale else 0.0, out.cosine,
                inputs_seen.max_abs if inputs_seen.count else None, out.agrees))
    diffs = _with_added(diffs)
    run_sizes = {"batch": set(), "sequence": set()}
    for _, feed in runs:  # the text inputs' [batch, sequence]
        for array in feed.values():
            if array.ndim == 2:
                run_sizes["batch"].add(array.shape[0])
                run_sizes["sequence"].add(array.shape[1])
    first = _first_divergence(diffs, seen.calls, seen.inputs, scopes, named, loaded, atol,
                              run_sizes)
    return CompareReport(
        model=loaded.name, reference=reference_label, runs=tuple(label for label, _ in runs),
        atol=atol, rtol=rtol, modules=tuple(diffs),
        unaligned=tuple(Unaligned(n, r) for n, r in seen.unaligned.items()),
        first_divergence=first, notes=_notes(scopes, named, seen.called, seen.identities),
    )


@dataclass
class _Measured:
    """What the runs found so far: each module's value (chosen on the first run and kept),
    its output and input errors (the worst over the runs), and what could not be aligned."""

    calls: list[Call] = field(default_factory=list)  # the first run's, called once each
    called: set[str] = field(default_factory=set)
    identities: set[str] = field(default_factory=set)
    chosen: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, _Stats] = field(default_factory=dict)
    inputs: dict[str, _Stats] = field(default_factory=dict)
    unaligned: dict[str, str] = field(default_factory=dict)

    def add_run(self, module, feed: dict[str, np.ndarray], values: dict[str, np.ndarray],
                scopes: Scopes, named: dict, atol: float, rtol: float) -> None:
        """Run the reference on `feed`, measuring each call against `values` as it completes
        (only the numbers are kept, never the tensors). A module called more than once is
        measured too, and dropped once the forward's counts show it (the graph cannot tell
        its calls apart)."""
        first = not self.called
        calls: list[Call] = []
        measured: set[str] = set()
        skip = set(self.unaligned) | self.identities

        def on_call(call: Call) -> None:
            calls.append(replace(call, inputs=(), outputs=()))
            if call.module in measured:
                return  # a second call in this forward: the counts drop the module below
            if call.identity and call.module not in scopes.nodes:
                return  # a dropout in eval: nothing of its own
            if call.module not in skip and call.module in scopes.nodes:
                measured.add(call.module)
                self._add_call(call, scopes, values, atol, rtol)

        counts = capture_torch(module, feed, on_call)
        if first:
            self.calls, self.called = [c for c in calls if counts[c.module] == 1], set(counts)
            self.identities = {c.module for c in calls
                               if c.identity and c.module not in scopes.nodes}
            self.unaligned.update(_not_aligned(named, counts, scopes, self.identities))
        for name in [n for n in self.chosen if counts.get(n, 0) != 1]:
            self.chosen.pop(name)

    def _add_call(self, call: Call, scopes: Scopes, values: dict[str, np.ndarray], atol: float,
                  rtol: float) -> None:
        value = self.chosen.get(call.module) or _pick_output(call, scopes, values)
        if isinstance(value, Unaligned):
            self.unaligned[call.module] = value.reason
            return
        if not call.outputs or values[value].shape != call.outputs[0].shape:
            self.unaligned[call.module] = (f"{value}, its value on the first inputs, has "
                                           "another shape than its output on later ones")
            self.chosen.pop(call.module, None)
            return
        self.chosen[call.module] = value
        self.outputs.setdefault(call.module, _Stats()).add(values[value], call.outputs[0],
                                                           atol, rtol)
        _add_inputs(call, scopes, values, self.inputs.setdefault(call.module, _Stats()),
                    atol, rtol)


def _notes(scopes: Scopes, named: dict, called: set[str], identities: set[str]
           ) -> tuple[str, ...]:
    notes = []
    if any(scopes.prefix):
        notes.append(f"ONNX scopes renamed to the reference's: {scopes.prefix[0]!r} -> "
                     f"{scopes.prefix[1]!r}")
    fused = sorted({n.op_type for nodes in scopes.nodes.values() for n in nodes
                    if n.domain == "com.microsoft" and n.op_type in FUSED}
                   | {n.op_type for n in scopes.unscoped if n.op_type in FUSED})
    if fused:
        notes.append(f"fused ops ({', '.join(fused)}): one node spans several modules, and "
                     "no value around one is taken for a module's output; compare the unfused "
                     "export (model.onnx) instead")
    idle = [n for n in named if n not in called]
    if idle:
        notes.append(f"{len(idle)} module(s) not called in this forward (containers, or "
                     "skipped), e.g. " + ", ".join(idle[:3]))
    if identities:
        notes.append(f"{len(identities)} module(s) returned their input (dropouts in eval), "
                     "e.g. " + ", ".join(sorted(identities)[:3]))
    return tuple(notes)


def _with_added(diffs: list[ModuleDiff]) -> list[ModuleDiff]:
    error = {d.module: d.max_abs for d in diffs}
    result = []
    for diff in diffs:
        inner = [e for name, e in error.items()
                 if name != diff.module and (not diff.module or name.startswith(diff.module + "."))]
        before = max([diff.input_max_abs or 0.0, *inner])
        result.append(replace(diff, added=diff.max_abs - before))
    return result


def _feeds(loaded: LoadedModel, inputs, shapes, seed: int, max_memory
           ) -> list[tuple[str, dict]]:
    if inputs:
        return load_feeds(loaded.model, inputs, max_memory)
    text = text_inputs(loaded.model)
    if isinstance(text, str):
        raise ShapeSpecError(f"{loaded.name}: {text}; give --inputs FILE.npz")
    if not shapes:  # a batch and a sequence the export dummy did not have
        metadata = {p.key: p.value for p in loaded.model.metadata_props}
        batch = 2 if metadata.get(METADATA + "dummy_batch", "2") != "2" else 3
        shapes = [(batch, 13 if metadata.get(METADATA + "dummy_sequence") != "13" else 11)]
    vocab = text_vocab(loaded.model, text)
    return [(f"{b}x{s}", text_feed(text, b, s, vocab, seed)) for b, s in shapes]


def _not_aligned(named: dict, counts: dict[str, int], scopes: Scopes, identities: set[str]
                 ) -> dict[str, str]:
    reasons = {}
    for name in named:
        if name in identities:
            continue  # returned its input (a dropout in eval): nothing of its own to compare
        if counts.get(name, 0) > 1:
            reasons[name] = (f"called {counts[name]} times in one forward: the graph does not "
                             "tell its calls apart")
        elif name not in counts:
            continue  # containers (ModuleList) and what this forward skips: nothing to align
        elif name not in scopes.nodes:
            reasons[name] = ("no ONNX node carries its scope (folded away, fused into "
                             "another node, or the exporter recorded none)")
    return reasons


def _pick_output(call: Call, scopes: Scopes, values: dict[str, np.ndarray]) -> str | Unaligned:
    if not call.outputs:
        return Unaligned(call.module, "returns no floating-point tensor")
    target = call.outputs[0]
    candidates = [v for v in scopes.outputs.get(call.module, ())
                  if v in values and values[v].shape == target.shape]
    if candidates and all(v in scopes.fused for v in candidates):
        return Unaligned(call.module, "its output enters or leaves a fused node, which may hold "
                                      "part of the module (a bias, a residual)")
    candidates = [v for v in candidates if v not in scopes.fused]
    if not candidates:
        return Unaligned(call.module, f"no float value leaving its scope has the output's shape "
                                      f"{list(target.shape)}")
    return min(candidates, key=lambda v: _max_abs(values[v], target))


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    diff = np.abs(a.astype(np.float64) - b)
    return float(np.nan_to_num(diff, nan=np.inf).max()) if diff.size else 0.0


def _add_inputs(call: Call, scopes: Scopes, values: dict[str, np.ndarray], seen: _Stats,
                atol: float, rtol: float) -> None:
    """Each float value entering the scope against the closest hook input of its shape."""
    for name in scopes.inputs.get(call.module, ()):
        value = values.get(name)
        if value is None or not np.issubdtype(value.dtype, np.floating):
            continue
        same = [t for t in call.inputs if t.shape == value.shape]
        if same:
            seen.add(value, min(same, key=lambda t, v=value: _max_abs(v, t)), atol, rtol)


def _first_divergence(diffs: list[ModuleDiff], calls: list[Call], inputs: dict[str, _Stats],
                      scopes: Scopes, named: dict, loaded: LoadedModel, atol: float,
                      run_sizes: dict[str, set[int]]) -> Divergence | None:
    by_name = {c.module: c for c in calls}
    for diff in diffs:
        if diff.agrees or not inputs[diff.module].agrees:
            continue
        nodes = scopes.nodes[diff.module]
        onnx_source = next((s for s in (node_source(n).location for n in nodes) if s), None)
        agreed = frozenset(d.onnx_value for d in diffs if d.agrees)
        cause = find_cause(diff.module, nodes, named, loaded, scopes.prefix, atol,
                           scopes.inputs.get(diff.module, []), agreed, run_sizes)
        return Divergence(diff.module, diff.module_class,
                          tuple(n.name for n in nodes[:_MAX_NODES]),
                          by_name[diff.module].source, onnx_source, diff.max_abs,
                          diff.relative, diff.cosine, diff.input_max_abs, cause)
    return None
