"""`diagnostics check` and `repair` on a corpus of models that are not BERT-style encoders.

    python -m benchmarks.bench_corpus [--only MODEL] [--workdir DIR]

Builds every (model, variant) of tests/builders/onnx_corpus.py (tiny random ViT, CLIP vision
and text, Whisper encoder, wav2vec2, GPT-2 with and without past, T5 encoder,
DeBERTa-v2, ModernBERT; healthy and frozen by the real export mechanisms), runs
`check` on each (as a user runs it: no sizes given), `check --probe` (no sizes
either), `check --expect --dummy` with the inputs the user meant to export (the
healthy dynamo export's) and the export dummy, and for each broken one `repair`
with the export dummy given (`--dummy`, which these exports do not record; GLiNER's
inputs too, `--inputs`, since its words and spans must agree) then onnxruntime at the corpus's
three trial shapes (the dummy, batch 1 and batch 3 at other sizes; batch 2, 1 and
3 at the dummy's other sizes for the static-input and specialised variants, whose
other dims the export fixed and the repair leaves). Then `check`
on the third-party ONNX files installed from pip (silero-vad, rapidocr, magika,
onnx's backend models). Prints docs/performance.md's table: verdict, findings, what was
not judged, and whether the repaired model runs at every trial.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import diagnostics  # noqa: F401  (before tests/ is on the path: tests/diagnostics is not it)


def _runs(path: Path, model: str, trials) -> list[str]:
    """The repaired file at each trial against the PyTorch model it came from (corpus_models)."""
    from benchmarks.corpus_models import session, try_shape
    from tests.builders import onnx_corpus

    run, reference = session(path), onnx_corpus.reference(model)
    return [try_shape(run, reference, onnx_corpus.feeds(model, sizes)) for sizes in trials]


def _mark(verdict: str, healthy: bool) -> str:
    """A false alarm or a false clean is wrong; incomplete is neither, and says so itself."""
    if verdict == "incomplete":
        return ""
    return "" if (verdict == "clean") == healthy else " **(wrong)**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="one model of the corpus")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    from diagnostics import check
    from diagnostics.analysis.signature import parse_expect
    from diagnostics.repair.plan import repair
    from tests.builders import onnx_corpus

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="subgraft-corpus-"))
    print("| model | variant | verdict | findings (nodes) | not judged | --probe, no sizes | "
          "--expect, --dummy | repaired: PyTorch's numbers at 3 trials | s |")
    print("|---|---|---|---|---|---|---|---|---:|")
    wrong = wrong_expect = incomplete = 0
    for model, variant in onnx_corpus.CORPUS:
        if args.only and model != args.only:
            continue
        start = time.perf_counter()
        entry = onnx_corpus.entry(model, variant)
        try:
            path = onnx_corpus.build(model, variant, workdir)
        except Exception as exc:  # an export that fails is a row, not a stop
            print(f"| {model} | {variant} | not built: {str(exc).splitlines()[0][:80]} |||||||")
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
        probe = check(path, probe=True).probe
        probed = (f"{probe.failures} failure(s) in {len(probe.runs)} runs" if probe.failures
                  else "inconclusive" if probe.inconclusive
                  else f"{len(probe.runs)} runs, ok") if probe.skipped is None else "skipped"
        # What the user meant to export (the healthy dynamo export's inputs), and its dummy.
        expect = parse_expect(onnx_corpus.entry(model, "healthy-dynamo").inputs)
        expected = check(path, expect=expect, dummy=entry.dummy)
        repaired = "-"
        spec = onnx_corpus.SPECS[model]
        # The specialised export is broken only by what the user expected of it.
        meant = expect if variant == "dynamo-specialised" else None
        if (expected if meant else report).findings:
            target = path.with_name(path.stem + ".repaired.onnx")
            try:
                trials = entry.trials
                if variant in ("static-inputs", "dynamo-specialised"):  # other dims stay fixed
                    trials = [{**entry.dummy, spec.batch: b} for b in (2, 1, 3)]
                # Inputs that must agree in value (GLiNER's) are given, as a user would.
                inputs = [onnx_corpus.feeds(model, t) for t in trials] if spec.feeds else None
                result = repair(path, target, dummy=entry.dummy, expect=meant, inputs=inputs)
                if target.is_file():
                    runs = _runs(target, model, trials)
                    repaired = ("yes" if all(r == "ok" for r in runs)
                                else "no: " + next(r for r in runs if r != "ok"))
                elif result.refusals:
                    repaired = "refused: " + result.refusals[0].reason[:100]
                else:
                    failures = result.verification.failures if result.verification else []
                    repaired = "not proved: " + (failures[0] if failures else "?")[:100]
            except Exception as exc:  # a refusal is a row too
                repaired = f"repair raised {type(exc).__name__}: {str(exc)[:100]}"
        mark = _mark(report.verdict, entry.healthy)
        wrong += "wrong" in mark
        incomplete += report.verdict == "incomplete"
        with_expect = (f"{expected.verdict} ({len(expected.findings)})"
                       + _mark(expected.verdict, entry.healthy))
        wrong_expect += "wrong" in with_expect
        print(f"| {model} | {variant} | {report.verdict}{mark} | {findings} | {skipped} | "
              f"{probed} | {with_expect} | {repaired} | {time.perf_counter() - start:.1f} |",
              flush=True)
    print(f"\n{wrong} wrong verdict(s) and {incomplete} incomplete as a user runs it; "
          f"{wrong_expect} wrong with --expect and --dummy")
    print("\n| third-party file | verdict | findings | not judged | not followed |")
    print("|---|---|---|---|---|")
    for name, path in onnx_corpus.third_party_models():
        report = check(path)
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(report.unhandled_ops.items())) or "-"
        print(f"| {name} | {report.verdict} | {len(report.findings)} | {len(report.skipped)} | "
              f"{ops} |", flush=True)


if __name__ == "__main__":
    main()
