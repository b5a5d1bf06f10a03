"""Build the ONNX corpus (tests/builders/onnx_corpus.py) and say which entries run at new shapes.

    python -m benchmarks.corpus_models [--models vit,gpt2] [--variants python-ints]

Every entry is exported into a temporary folder, loaded in onnxruntime and run at
its dummy shape and at two others (batch 1 and 3, other spatial/sequence sizes);
outputs are compared with the healthy PyTorch model. Prints a Markdown table:
build seconds, file size, the graph's inputs with their dims, whether it runs at
the new shapes, whether it behaves as its `entry()` says, and per shape `ok`
(within 1e-4 of PyTorch), `WRONG` (wrong shape or values) or onnxruntime's error.
Then the third-party ONNX files found in installed packages, at their trial shapes.
Exit code 1 when an entry does not build or does not behave as described.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnx.numpy_helper  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

TOLERANCE = 1e-4
CLEAN, MISMATCH = 0, 1
_ADVICE = " Please fix either the inputs/outputs or the model."


def graph_inputs(path: Path) -> str:
    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    parts = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_param or str(d.dim_value) for d in value.type.tensor_type.shape.dim]
        parts.append(f"{value.name}[{', '.join(dims)}]")
    return "; ".join(parts)


def first_line(error: Exception) -> str:
    """The useful part of an onnxruntime error: node, and what did not fit."""
    text = " ".join(str(error).split()).replace(_ADVICE, "")
    node = re.search(r"running (\w+) node\. Name:'([^']*)'", text)
    detail = re.split(r"(?:was false\.|Status Message: )", text)[-1].strip()
    detail = re.sub(r"^/onnxruntime_src/\S+ ", "", detail)
    return f"{node.group(1)} {node.group(2)}: {detail}" if node else text.split(" : ")[-1]


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 4
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def try_shape(run: ort.InferenceSession, reference: torch.nn.Module, feeds: dict) -> str:
    try:
        outputs = run.run(None, feeds)
    except Exception as exc:  # noqa: BLE001 - the error is the result
        return f"FAILS: {first_line(exc)}"
    with torch.no_grad():
        expected = reference(*(torch.from_numpy(a) for a in feeds.values()))
    for name, got, want in zip(
        [o.name for o in run.get_outputs()], outputs, expected, strict=True
    ):
        if got.shape != tuple(want.shape):
            return f"WRONG: {name} {list(got.shape)} != {list(want.shape)}"
        error = float(np.abs(got - want.numpy()).max())
        if error > TOLERANCE:
            return f"WRONG: {name} max abs {error:.1e}"
    return "ok"


def constant_reshape_targets(path: Path) -> set[tuple[int, ...]]:
    model = onnx.load(str(path))
    constants = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    return {
        tuple(int(v) for v in constants[node.input[1]].reshape(-1))
        for node in model.graph.node
        if node.op_type == "Reshape" and node.input[1] in constants
    }


def row(
    model: str, variant: str, directory: Path, healthy: dict[str, set[tuple[int, ...]]]
) -> tuple[str, float | None, bool]:
    """One table line, the build's seconds (None: it failed), and whether it is as described.

    `healthy` caches each model's healthy TorchScript constant Reshape targets.
    """
    from tests.builders.onnx_corpus import build, entry, feeds, reference

    expected = entry(model, variant)
    start = time.perf_counter()
    try:
        path = build(model, variant, directory)
    except Exception as exc:  # noqa: BLE001 - a refusal is a row
        line = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        return f"| {model} | {variant} | - | - | - | - | NO | BUILD FAILS: {line} |", None, False
    seconds = time.perf_counter() - start
    size = path.stat().st_size / 1024
    model_reference = reference(model)
    run = session(path)
    results = [try_shape(run, model_reference, feeds(model, sizes)) for sizes in expected.trials]
    at_new = all(r == "ok" for r in results[1:])
    targets = constant_reshape_targets(path)
    if variant == "healthy-torchscript":
        healthy[model] = targets
    elif expected.targets and model not in healthy:
        healthy[model] = constant_reshape_targets(build(model, "healthy-torchscript", directory))
    # Does the build behave as its entry says? (The frozen targets: only against TorchScript.)
    new_targets = targets - healthy[model] if expected.targets else set()
    agrees = results[0] == "ok" and (
        at_new if expected.healthy
        else expected.error in results[-1] and new_targets == set(expected.targets)
    )
    cells = "<br>".join(
        f"{','.join(map(str, sizes.values()))}: {result}"
        for sizes, result in zip(expected.trials, results, strict=True)
    )
    line = (f"| {model} | {variant} | {seconds:.1f} | {size:.0f} KiB | {graph_inputs(path)} "
            f"| {'yes' if at_new else 'no'} | {'yes' if agrees else 'NO'} | {cells} |")
    return line, seconds, agrees


def third_party_rows() -> list[str]:
    from tests.builders.onnx_corpus import THIRD_PARTY, third_party_feeds, third_party_models

    lines = []
    for name, path in third_party_models():
        run = session(path)
        results = []
        for trial in range(len(THIRD_PARTY[name].trials)):
            feeds = third_party_feeds(name, trial)
            shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items())
            try:
                outputs = ", ".join(str(list(o.shape)) for o in run.run(None, feeds))
                results.append(f"{shapes} -> ok {outputs}")
            except Exception as exc:  # noqa: BLE001 - the error is the result
                results.append(f"{shapes} -> FAILS: {first_line(exc)[:200]}")
        inputs = "; ".join(
            f"{i.name} {i.type.removeprefix('tensor(').removesuffix(')')} {i.shape}"
            for i in run.get_inputs()
        )
        kib = path.stat().st_size / 1024
        lines.append(f"| {name} | {kib:.0f} KiB | {inputs} | {'<br>'.join(results)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    from tests.builders.onnx_corpus import SPECS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(SPECS))
    parser.add_argument("--variants", default="")
    parser.add_argument("--no-third-party", action="store_true")
    args = parser.parse_args(argv)
    wanted = set(args.variants.split(",")) - {""}
    torch.set_num_threads(2)
    ort.set_default_logger_severity(4)
    print("| model | variant | build s | size | inputs | runs at new shapes | as described "
          "| per shape (sizes: result) |")
    print("|---|---|---|---|---|---|---|---|")
    start = time.perf_counter()
    builds: dict[tuple[str, str], float | None] = {}
    healthy: dict[str, set[tuple[int, ...]]] = {}
    all_agree = True
    with tempfile.TemporaryDirectory() as directory:
        for model in args.models.split(","):
            for variant in SPECS[model].variants:
                if wanted and variant not in wanted:
                    continue
                line, builds[model, variant], agrees = row(model, variant, Path(directory), healthy)
                all_agree &= agrees
                print(line, flush=True)
    done = {k: v for k, v in builds.items() if v is not None}
    dynamo = sum(v for (_, variant), v in done.items() if "dynamo" in variant)
    print(f"\n{len(done)} of {len(builds)} entries built; builds {sum(done.values()):.0f} s "
          f"({dynamo:.0f} s of it the torch.export-based exporter); "
          f"{time.perf_counter() - start:.0f} s with verification")
    if not args.no_third_party:
        print("\n| third-party file | size | inputs | trials |\n|---|---|---|---|")
        for line in third_party_rows():
            print(line)
    return CLEAN if all_agree else MISMATCH


if __name__ == "__main__":
    raise SystemExit(main())
