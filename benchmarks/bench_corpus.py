"""`diagnostics check` and `repair` on a corpus of models that are not BERT-style encoders.

    python benchmarks/bench_corpus.py [--only MODEL] [--workdir DIR]

Builds every (model, variant) of tests/onnx_corpus.py (tiny random ViT, CLIP vision
and text, Whisper encoder, wav2vec2, GPT-2 with and without past, T5 encoder,
DeBERTa-v2, ModernBERT; healthy and frozen by the real export mechanisms), runs
`check` on each (as a user runs it: no sizes given), and for each broken one
`repair` with the export dummy given (`--dummy`, which these exports do not
record) then onnxruntime at the corpus's three trial shapes (the dummy, batch 1
and batch 3 at other sizes; batch 2, 1 and 3 at the dummy's other sizes for the
static-input variants, whose other dims the export fixed and the repair leaves). Then `check`
on the third-party ONNX files installed from pip (silero-vad, rapidocr, magika,
onnx's backend models). Prints the README's table: verdict, findings, what was
not judged, and whether the repaired model runs at every trial.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import diagnostics  # noqa: F401  (before tests/ is on the path: tests/diagnostics is not it)

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "tests"))
sys.path.append(str(ROOT / "benchmarks"))


def _runs(path: Path, model: str, trials) -> list[str]:
    """The repaired file at each trial against the PyTorch model it came from (corpus_models)."""
    import onnx_corpus
    from corpus_models import session, try_shape

    run, reference = session(path), onnx_corpus.reference(model)
    return [try_shape(run, reference, onnx_corpus.feeds(model, sizes)) for sizes in trials]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="one model of the corpus")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    import onnx_corpus

    from diagnostics import check
    from diagnostics.repairer import repair

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="subgraft-corpus-"))
    print("| model | variant | verdict | findings (nodes) | not judged | repaired: PyTorch's "
          "numbers at 3 trials | s |")
    print("|---|---|---|---|---|---|---:|")
    wrong = 0
    for model, variant in onnx_corpus.CORPUS:
        if args.only and model != args.only:
            continue
        start = time.perf_counter()
        entry = onnx_corpus.entry(model, variant)
        try:
            path = onnx_corpus.build(model, variant, workdir)
        except Exception as exc:  # an export that fails is a row, not a stop
            print(f"| {model} | {variant} | not built: {str(exc).splitlines()[0][:80]} |||||")
            continue
        report = check(path)
        findings = f"{len(report.findings)}"
        if report.findings:
            findings += " (" + ", ".join(f.node.rsplit("/", 2)[-2] + "/" + f.node.rsplit("/", 1)[-1]
                                         if "/" in f.node else f.node
                                         for f in report.findings[:3]) + (
                ", ..." if len(report.findings) > 3 else "") + ")"
        skipped = f"{len(report.skipped)}" + (
            f" ({', '.join(dict.fromkeys(s.reason for s in report.skipped))})"
            if report.skipped else "")
        repaired = "-"
        if report.findings:
            target = path.with_name(path.stem + ".repaired.onnx")
            try:
                result = repair(path, target, dummy=entry.dummy)
                trials = entry.trials
                if variant == "static-inputs":  # only batch is analysed as a symbol there
                    trials = [{**entry.dummy, "batch": b} for b in (2, 1, 3)]
                if target.is_file():
                    runs = _runs(target, model, trials)
                    repaired = ("yes" if all(r == "ok" for r in runs)
                                else "no: " + next(r for r in runs if r != "ok"))
                else:
                    repaired = "refused: " + "; ".join(str(r.reason) for r in result.refusals)[:100]
            except Exception as exc:  # a refusal is a row too
                repaired = f"repair raised {type(exc).__name__}: {str(exc)[:100]}"
        expected = "clean" if entry.healthy else "findings"
        mark = "" if report.verdict == expected else " **(expected " + expected + ")**"
        wrong += bool(mark)
        print(f"| {model} | {variant} | {report.verdict}{mark} | {findings} | {skipped} | "
              f"{repaired} | {time.perf_counter() - start:.1f} |", flush=True)
    print(f"\n{wrong} verdict(s) not as expected")
    print("\n| third-party file | verdict | findings | not judged | not followed |")
    print("|---|---|---|---|---|")
    for name, path in onnx_corpus.third_party_models():
        report = check(path)
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(report.unhandled_ops.items())) or "-"
        print(f"| {name} | {report.verdict} | {len(report.findings)} | {len(report.skipped)} | "
              f"{ops} |", flush=True)


if __name__ == "__main__":
    main()
