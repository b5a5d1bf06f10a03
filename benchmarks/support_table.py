"""Regenerate the support table in docs/cli.md: every encoder type x both exporters.

    python -m benchmarks.support_table [--types bert,t5] [--exporters dynamo,torchscript]

For each supported model type, a composite checkpoint holding a tiny random
encoder (tests/builders/tiny_encoders.py) is extracted exactly as a user would (config
found in the checkpoint, no flags but the exporter); the row gives the
extractor's verdict, parity's worst max abs over the five shapes, the worst
max abs against the encoder the checkpoint came from (three shapes, real
tokens), and the refusal or failure reason. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
def row(model_type: str, exporter: str) -> str:
    from extractor import extract
    from extractor.errors import ExtractorError
    from tests.builders.layouts import assert_matches
    from tests.builders.tiny_encoders import composite_checkpoint

    with tempfile.TemporaryDirectory() as directory:
        path, encoder = composite_checkpoint(Path(directory), model_type)
        start = time.perf_counter()
        try:
            report = extract(path, None, Path(directory) / "out", exporter=exporter)
        except ExtractorError as exc:
            reason = str(exc).split(": ", 1)[-1]
            return f"| {model_type} | {exporter} | refused | - | - | {reason} |"
        seconds = time.perf_counter() - start
        worst = max(r.max_abs for r in report.parity.results)
        if not report.ok:
            failed = report.parity.failures
            why = (f"{len(failed)} of {len(report.parity.results)} comparisons fail"
                   f" (first: {failed[0].case} {failed[0].batch}x{failed[0].sequence}"
                   f"{', ' + failed[0].error[:80] if failed[0].error else ''})"
                   if failed else f"{len(report.frozen.findings)} frozen shapes")
            first = report.comparison.first_divergence if report.comparison else None
            if first:
                why += f"; first divergent module {first['module']}: {first['cause']}"
            return f"| {model_type} | {exporter} | FAILS verification | {worst:.1e} | - | {why} |"
        try:
            assert_matches(report.output / "model.onnx", encoder)
            truth = "within 1e-4"
        except AssertionError as exc:
            truth = f"NO: {exc}"
        inputs = ", ".join(report.export.input_names)
        return (f"| {model_type} | {exporter} | ok | {worst:.1e} | {truth} | inputs {inputs}; "
                f"{seconds:.1f} s |")


def main() -> None:
    from extractor.resolve.encoders import ENCODER_TYPES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", default=",".join(ENCODER_TYPES))
    parser.add_argument("--exporters", default="dynamo,torchscript")
    args = parser.parse_args()
    print("| model type | exporter | result | parity max abs | vs. original | notes |")
    print("|---|---|---|---:|---|---|")
    for model_type in args.types.split(","):
        for exporter in args.exporters.split(","):
            print(row(model_type, exporter), flush=True)


if __name__ == "__main__":
    main()
