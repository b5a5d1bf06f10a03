"""subgraft's files against the engines a user would pick instead, timed and measured together.

Every engine runs the same inputs with the same threads, in turns (speed.py),
and every engine's `last_hidden_state` is judged against PyTorch fp32 on the
corpus's judging part (tiers.corpus; the directory's tokenizer) in the batch
compositions our int8 files are judged in, so each speed is read beside its
accuracy on text no file of ours was tuned on.
Each row names the accuracy tier it claims and whether it meets that tier's
gate (accuracy.py). An engine that is not installed or cannot run here is a
row that says why, never a missing row. Each time comes with its spread and
warnings as in speed.py; idle threads wait alike there too (OpenVINO's own
thread pool has no such setting and keeps its default).
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diagnostics.errors import first_line

from ..tiers.accuracy import Agreement
from ..tiers.corpus import Judgement, judge, real_text
from ..tiers.runtimes import (
    Runner,
    RuntimeUnavailable,
    bf16_problem,
    onnxruntime_runner,
    openvino_runner,
    with_thread_wait,
)
from ..tiers.static_int8 import STATIC_INT8_NAME
from .speed import (
    BusyWatch,
    Timing,
    interleaved_times,
    random_inputs,
    run_conditions,
    shape_timings,
)

PYTORCH_FP32 = "PyTorch fp32"
OPENVINO_IR = "openvino/model.xml"
INT8_IR = "openvino/model.int8.xml"


@dataclass
class Engine:
    name: str
    tier: str  # the tier it is compared in: exact, bf16 or int8
    ours: bool  # one of subgraft's files in its own runtime
    runner: Runner | None = None  # dropped once compare_peers has measured it
    unavailable: str | None = None  # why it is not timed
    judged: Judgement | None = None  # per batch composition, on the judging part
    agreement: Agreement | None = None  # the judgement's worst figures: one table row
    ms: dict[tuple[int, int], float] = field(default_factory=dict)  # median, per shape
    timings: dict[tuple[int, int], Timing] = field(default_factory=dict)  # spread, speed-up

    @property
    def meets_tier(self) -> bool | None:
        return self.agreement.ok if self.agreement else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "tier": self.tier,
            "subgraft": self.ours,
            "unavailable": self.unavailable,
            "meets_tier": self.meets_tier,
            "accuracy": self.agreement.to_dict() if self.agreement else None,
            "judged": self.judged.to_dict() if self.judged else None,
            "ms": {f"{b}x{s}": ms for (b, s), ms in self.ms.items()},
            "timings": {f"{b}x{s}": {k: v for k, v in t.__dict__.items() if k != "conditions"}
                        for (b, s), t in self.timings.items()},
            "conditions": next((t.conditions for t in self.timings.values()), None),
        }


def compare_peers(directory: str | Path, threads: int = 2, runs: int = 20,
                  shapes: tuple[tuple[int, int], ...] = ((1, 128), (8, 128), (1, 16)),
                  spinning: bool = True) -> list[Engine]:
    """Every engine for the model in `directory`: accuracy on real text, then speed.

    `spinning` as for `speed.benchmark`; the engines come back without their runners.
    """
    return with_thread_wait(spinning, _compare_here, Path(directory), threads, runs,
                            tuple(shapes), spinning)


def _compare_here(directory: Path, threads: int, runs: int,
                  shapes: tuple[tuple[int, int], ...], spinning: bool) -> list[Engine]:
    import torch

    from ..resolve.model import load_saved_model

    torch.set_num_threads(threads)
    model = load_saved_model(directory)
    found = engines(directory, model, threads, spinning)
    measure_accuracy(found, directory, model)
    time_engines(found, model.config.vocab_size, shapes, runs, threads, spinning)
    for engine in found:
        engine.runner = None  # closures over sessions: neither picklable nor small
    return found


def engines(directory: str | Path, model: Any, threads: int, spinning: bool | None = None
            ) -> list[Engine]:
    """subgraft's files present in `directory` and the peers, each with a runner or a reason."""
    directory = Path(directory)
    found: list[Engine] = []

    def add(name: str, tier: str, ours: bool, make: Callable[[], Runner]) -> None:
        try:
            found.append(Engine(name, tier, ours, runner=make()))
        except RuntimeUnavailable as exc:
            found.append(Engine(name, tier, ours, unavailable=str(exc)))
        except Exception as exc:  # a peer that fails to load is a row saying so
            first = first_line(exc, 160)
            found.append(Engine(name, tier, ours, unavailable=f"failed: {first}"))

    def file(name: str, why: str = "extract with the flag that writes it") -> Path:
        if not (directory / name).is_file():
            raise RuntimeUnavailable(f"no {name} ({why})")
        return directory / name

    add(PYTORCH_FP32, "exact", False, lambda: _torch_runner(model))
    add("onnxruntime model.onnx", "exact", True,
        lambda: onnxruntime_runner(file("model.onnx"), threads, spinning))
    add("onnxruntime model.optimized.onnx", "exact", True,
        lambda: onnxruntime_runner(file("model.optimized.onnx"), threads, spinning))
    add("OpenVINO f32 on model.onnx", "exact", False,
        lambda: openvino_runner(file("model.onnx"), "f32", threads))
    add("OpenVINO f32 openvino/model.xml", "exact", True,
        lambda: openvino_runner(file(OPENVINO_IR), "f32", threads))
    add("Optimum O3 (onnxruntime)", "exact", False, _optimum_unavailable)

    add("OpenVINO bf16 openvino/model.xml", "bf16", True,
        lambda: _bf16(lambda: openvino_runner(file(OPENVINO_IR), "bf16", threads)))
    add("PyTorch bf16 autocast", "bf16", False, lambda: _torch_runner(model, autocast=True))
    add("OpenVINO bf16 on model.onnx", "bf16", False,
        lambda: _bf16(lambda: openvino_runner(file("model.onnx"), "bf16", threads)))

    add("onnxruntime model.int8.onnx", "int8", True,
        lambda: onnxruntime_runner(file("model.int8.onnx"), threads, spinning))
    add("onnxruntime model.int8.static.onnx", "int8", True,
        lambda: onnxruntime_runner(file(STATIC_INT8_NAME, "--quantize int8 keeps it only where it "
                                                "meets the int8 gate"), threads, spinning))
    add("OpenVINO int8 openvino/model.int8.xml", "int8", True,
        lambda: openvino_runner(file(INT8_IR), "f32", threads))
    add("torch.ao dynamic int8", "int8", False, lambda: _torch_runner(_torch_ao_int8(model)))
    add("OpenVINO f32 on model.int8.onnx", "int8", False,
        lambda: openvino_runner(file("model.int8.onnx"), "f32", threads))
    add("CTranslate2 int8", "int8", False, lambda: _ctranslate2_runner(directory, threads))
    return found


def time_engines(found: list[Engine], vocab: int, shapes: tuple[tuple[int, int], ...],
                 runs: int, threads: int = 2, spinning: bool = True) -> None:
    """Every available engine's figures at each shape, the engines taking turns; speed-ups
    against PyTorch fp32 (`spinning`, `threads`: recorded with them, as speed.py does)."""
    timed = [e for e in found if e.runner is not None]
    if not timed:
        return
    base = next((e.name for e in timed if e.name == PYTORCH_FP32), timed[0].name)
    watch = BusyWatch()
    turns = []
    for batch, sequence in shapes:
        feeds = random_inputs(batch, sequence, vocab)
        turns.append((batch, sequence, interleaved_times(
            {e.name: (lambda r=e.runner, f=feeds: r(f)) for e in timed}, max(5, runs // batch))))
    conditions = run_conditions(threads, spinning, watch.others())
    for batch, sequence, times in turns:
        figures = {t.model: t for t in shape_timings(times, base, batch, sequence, conditions)}
        for engine in timed:
            engine.timings[(batch, sequence)] = figures[engine.name]
            engine.ms[(batch, sequence)] = figures[engine.name].ms


def measure_accuracy(found: list[Engine], directory: str | Path, model: Any) -> None:
    """Each available engine judged against PyTorch fp32 on the corpus's judging part,
    tokenised by the directory's tokenizer: each sentence alone, padded batches of mixed
    lengths and the longest together, as `extract` judges its int8 files."""
    from ..export_inputs import input_names_for

    text = real_text(directory, input_names_for(model), _torch_runner(model))
    for engine in found:
        if engine.runner is None:
            continue
        engine.judged = judge(engine.name, engine.runner, text, engine.tier)
        engine.agreement = engine.judged.worst


def fastest(found: list[Engine], tier: str, shape: tuple[int, int], ours: bool
            ) -> Engine | None:
    """The fastest engine of `tier` at `shape` that meets the tier's gate."""
    timed = [e for e in found if e.tier == tier and e.ours == ours and e.meets_tier
             and shape in e.ms]
    return min(timed, key=lambda e: e.ms[shape], default=None)


def comparisons(found: list[Engine], tier: str) -> list[str]:
    """Per shape: subgraft's fastest file of `tier` against the fastest peer meeting its gate."""
    lines = []
    for shape in dict.fromkeys(shape for e in found for shape in e.ms):
        ours, peer = fastest(found, tier, shape, True), fastest(found, tier, shape, False)
        if ours and peer:
            flagged = any(e.timings[shape].warnings for e in (ours, peer) if shape in e.timings)
            lines.append(f"{shape[0]}x{shape[1]}: subgraft's fastest ({ours.name}) is "
                         f"{peer.ms[shape] / ours.ms[shape]:.2f}x the fastest peer ({peer.name})"
                         + (", from figures marked !" if flagged else ""))
    return lines


def _bf16(make: Callable[[], Runner]) -> Runner:
    if problem := bf16_problem():
        raise RuntimeUnavailable(problem)
    return make()


def _torch_runner(model: Any, autocast: bool = False) -> Runner:
    import torch

    from ..export_inputs import input_names_for

    names = set(input_names_for(model))

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        tensors = {k: torch.from_numpy(v) for k, v in feeds.items() if k in names}
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            return model(**tensors)[0].float().numpy()
    return run


def _torch_ao_int8(model: Any) -> Any:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)


def _optimum_unavailable() -> Runner:
    try:
        import optimum.onnxruntime  # noqa: F401
    except ImportError:
        raise RuntimeUnavailable(
            "optimum-onnx is not installed: it requires transformers < 4.58, this project "
            "transformers 5; export in another environment and time it with --extra") from None
    raise RuntimeUnavailable("installed, but not run here: time its export with --extra")


def _ctranslate2_runner(directory: Path, threads: int) -> Runner:
    """CTranslate2's int8 encoder, converted from the directory's Hugging Face model.

    Its converter (4.8) reads `config.position_embedding_type`, which transformers 5
    no longer sets; the copy it converts from names the default ("absolute").
    """
    try:
        import ctranslate2
        from ctranslate2.converters import TransformersConverter
    except ImportError:
        raise RuntimeUnavailable("ctranslate2 is not installed (pip install ctranslate2)") from None
    import json
    import shutil
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix="subgraft-ct2-"))
    try:
        source = scratch / "hf"
        shutil.copytree(directory, source, ignore=shutil.ignore_patterns("*.onnx*", "openvino"))
        config = json.loads((source / "config.json").read_text())
        config.setdefault("position_embedding_type", "absolute")
        (source / "config.json").write_text(json.dumps(config))
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            TransformersConverter(str(source)).convert(str(scratch / "ct2"), quantization="int8")
        encoder = ctranslate2.Encoder(str(scratch / "ct2"), device="cpu", compute_type="int8",
                                      intra_threads=threads)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        ids = feeds["input_ids"].astype(np.int32)
        lengths = feeds["attention_mask"].sum(1).astype(np.int32)
        types = feeds.get("token_type_ids")
        output = encoder.forward_batch(ctranslate2.StorageView.from_array(ids),
                                       ctranslate2.StorageView.from_array(lengths),
                                       types.tolist() if types is not None else None)
        return np.asarray(output.last_hidden_state)
    return run
