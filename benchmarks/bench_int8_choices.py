"""Which of onnxruntime's dynamic-int8 choices make `model.int8.onnx` faster, timed in turns.

    python -m benchmarks.bench_int8_choices [--threads 2] [--runs 20] [--workdir DIR]

bert-base's shape with random weights (speed does not depend on the values),
exported as the extractor exports the graph it quantizes (TorchScript, eager
attention), then quantized every way below with nothing kept in fp32, so each row
differs from the first in one choice only:

- ours: query/key/value merged into one MatMul, per-channel int8 weights (what
  `--quantize int8` writes);
- not merged: the three projections quantized apart, each input quantized three times;
- per-tensor weights: one scale per weight matrix;
- reduce_range: 7-bit weights, onnxruntime's advice against VPMADDUBSW's
  saturation on AVX2 CPUs without VNNI;
- uint8 weights (U8U8): the other kernel family;
- fused attention first: onnxruntime's fusions (the `Attention` op), then quantized;
- 1 thread: ours with one intra-op thread, to show what the second core gives.

Every file runs with the same threads and idle-thread waiting (spinning, onnxruntime's
default) at (1, 128), (8, 128) and (1, 16); each figure is the median ms with its
quartiles and its speed over ours in the same turns, flagged as bench flags noise. It
prints the CPU and its int8 flags: a choice that helps on one instruction set may not
on another, so read the table with the CPU it names.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

SHAPES = ((1, 128), (8, 128), (1, 16))


def export_fusable(workdir: Path) -> tuple[Path, Any]:
    """bert-base (random weights) as the extractor's TorchScript graph, and its config."""
    import torch
    from transformers import BertConfig, BertModel

    from extractor.export import export_onnx

    torch.manual_seed(0)
    model = BertModel(BertConfig()).eval()
    model.set_attn_implementation("eager")  # as the extractor exports it
    path = workdir / "fusable.onnx"
    export_onnx(model, path, exporter="torchscript")
    return path, model.config


def quantized(source: Path, target: Path, merge: bool = True, **choices: Any) -> Path:
    """Dynamic int8 of every MatMul with constant weights (and Attention) in `source`."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from extractor.tiers.merge_projections import merge_projections
    from extractor.tiers.quantize import QUANTIZED_OPS, drop_shape_annotations

    model = onnx.load(str(source))
    if merge:
        merge_projections(model)
    staged = target.with_name(target.stem + ".source.onnx")
    onnx.save(model, str(staged), save_as_external_data=True, location=staged.name + ".data")
    options = {"per_channel": True, "weight_type": QuantType.QInt8, **choices}
    quantize_dynamic(str(staged), str(target), op_types_to_quantize=list(QUANTIZED_OPS),
                     use_external_data_format=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}, **options)
    drop_shape_annotations(target)
    for leftover in (staged, staged.with_name(staged.name + ".data")):
        leftover.unlink()
    return target


def files(workdir: Path) -> dict[str, tuple[Path, int | None]]:
    """Each variant's file, and the threads it runs with (None: the run's)."""
    from onnxruntime.quantization import QuantType

    from extractor.tiers.optimize import optimize_onnx

    source, config = export_fusable(workdir)
    fused = optimize_onnx(source, workdir / "fused.onnx", config).path
    ours = quantized(source, workdir / "ours.onnx")
    return {
        "ours (merged, per-channel)": (ours, None),
        "not merged": (quantized(source, workdir / "unmerged.onnx", merge=False), None),
        "per-tensor weights": (quantized(source, workdir / "tensor.onnx", per_channel=False),
                               None),
        "reduce_range (7-bit weights)": (quantized(source, workdir / "reduced.onnx",
                                                   reduce_range=True), None),
        "uint8 weights (U8U8)": (quantized(source, workdir / "u8u8.onnx",
                                           weight_type=QuantType.QUInt8), None),
        "fused attention first": (quantized(fused, workdir / "fusedq.onnx", merge=False), None),
        "ours, 1 thread": (ours, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="subgraft-int8-choices-"))
    workdir.mkdir(parents=True, exist_ok=True)

    from extractor.bench.speed import (
        BusyWatch,
        interleaved_times,
        random_inputs,
        run_conditions,
        shape_timings,
    )
    from extractor.tiers.runtimes import onnxruntime_runner

    made = files(workdir)
    runners: dict[str, Callable[[dict[str, Any]], Any]] = {
        name: onnxruntime_runner(path, threads or args.threads, True)
        for name, (path, threads) in made.items()}
    base = next(iter(runners))
    watch = BusyWatch()
    turns = []
    for batch, sequence in SHAPES:
        feeds = random_inputs(batch, sequence, 30522)
        turns.append((batch, sequence, interleaved_times(
            {name: (lambda run=run, f=feeds: run(f)) for name, run in runners.items()},
            max(5, args.runs // batch))))
    conditions = run_conditions(args.threads, True, watch.others())
    print(f"CPU: {conditions['cpu']} ({', '.join(conditions['cpu_flags'])}), "
          f"{conditions['cores']} cores, {args.threads} threads; other processes' busy cores "
          f"while timing: {conditions['other_processes_cores']}; onnxruntime "
          f"{conditions['onnxruntime']}")
    print("\nmedian ms (quartiles), and speed over ours in the same turns (above 1: faster)")
    print("\n| file | " + " | ".join(f"{b}x{s}" for b, s, _ in turns) + " |")
    print("|---|" + "---:|" * len(turns))
    table = {(b, s): {t.model: t for t in shape_timings(times, base, b, s, conditions)}
             for b, s, times in turns}
    for name in runners:
        cells = []
        for shape in table:
            t = table[shape][name]
            cells.append(f"{t.ms:.1f} ({t.ms_p25:.1f}-{t.ms_p75:.1f}) ms, "
                         f"{t.speedup:.2f}x{' !' if t.warnings else ''}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    warnings = list(dict.fromkeys(w for shape in table.values() for t in shape.values()
                                  for w in t.warnings))
    print("".join(f"\nwarning: {w}" for w in warnings) or "\nno figure flagged")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
