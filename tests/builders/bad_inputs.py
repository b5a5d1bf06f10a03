"""A corpus of bad (and a few valid) inputs for every entry point, and the contract.

Seeds are real files: the fixture checkpoint (zip), the same weights in torch's
legacy format and in safetensors, a sharded directory, a small ONNX model with
its weights inline and one with external data, models with If/Loop subgraphs,
opset 7, no inputs, no graph, and pickles that would run code. A case is a seed
mutated (cut at an offset, a byte flipped, noise, text, emptiness) and an
argument list for one entry point. The contract for every case: exit 2 with at
most two lines on stderr (or 0/1, or 3 from `check` when nodes were not judged,
when the input is in fact valid), no
traceback, nothing created under the output path, the input unchanged, and
no code run (the marker file a malicious pickle would write never appears).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import signal
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[2]  # the repository
MARKER = "ran-code.marker"  # what the malicious pickles would create in the case directory

ENTRY_POINTS: dict[str, Callable[[str, str], list[str]]] = {
    "extract": lambda src, out: ["x", src, "-o", out],
    "extract --list": lambda src, out: ["x", src, "--list"],
    "extract --prefix": lambda src, out: ["x", src, "--prefix", "bert.", "-o", out],
    "bench": lambda src, out: ["x", "bench", src],
    "check": lambda src, out: ["d", "check", src],
    "check --probe": lambda src, out: ["d", "check", src, "--probe", "1x5,2x7"],
    "check --expect": lambda src, out: ["d", "check", src, "--expect",
                                        "input_ids[batch,sequence];pixel_values[batch,3,h,w]"],
    "repair": lambda src, out: ["d", "repair", src, "-o", out],
    "show": lambda src, out: ["d", "show", src, "--no-browser"],
}
# Arguments that do not parse or are out of range, for the commands that take shapes.
BAD_ARGUMENTS = [
    ["d", "check", "{onnx}", "--probe", "0x5"],
    ["d", "check", "{onnx}", "--probe", "-1x3"],
    ["d", "check", "{onnx}", "--probe", "abc"],
    ["d", "check", "{onnx}", "--probe", "3x"],
    ["d", "check", "{onnx}", "--dummy", "batch=0,sequence=5"],
    ["d", "check", "{onnx}", "--dummy", "batch=x"],
    ["d", "check", "{onnx}", "--dummy", "sequence=-3"],
    ["d", "check", "{onnx}", "--expect", "input_ids[batch"],
    ["d", "check", "{onnx}", "--expect", "input_ids[batch,,sequence]"],
    ["d", "repair", "{onnx}", "-o", "{out}", "--expect", "[batch]"],
    ["d", "check", "{onnx}", "--inputs", "{onnx}"],
    ["d", "check", "{onnx}", "--inputs", "{out}"],
    ["d", "repair", "{onnx}", "-o", "{out}", "--inputs", "{onnx}"],
    ["d", "repair", "{onnx}", "-o", "{out}", "--shapes", "0x5"],
    ["d", "repair", "{onnx}", "-o", "{out}", "--shapes", "1x999999999999"],
    ["d", "show", "{onnx}", "--no-browser", "--port", "70000"],
    ["d", "show", "{onnx}", "--no-browser", "--node", "no-such-node"],
    ["x", "bench", "{dir}", "--shapes", "0x5"],
    ["x", "bench", "{dir}", "--shapes", "abc"],
    ["x", "bench", "{dir}", "--threads", "-2"],
    ["x", "{ckpt}", "--set", "no equals"],
    ["x", "{ckpt}", "--set", "1bad=3"],
    ["x", "{ckpt}", "--opset", "-4"],
    ["x", "{ckpt}", "--atol", "-1"],
    ["x", "{ckpt}", "--prefix", "nothing."],
    ["x", "graft-check", "{dir}", "--parent", "no_module:f", "--submodule", "bert",
     "--batches", "{ckpt}"],
]


@dataclass(frozen=True)
class Seed:
    name: str
    kind: str  # "checkpoint", "onnx" or "dir"
    files: dict[str, bytes]  # relative path -> bytes; the first is what the command is given


def collection_folder(prefix: str) -> Path:
    """A folder for files built while tests are collected (before any fixture exists),
    removed when the test process ends."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def seeds(workdir: Path) -> list[Seed]:
    """The real files mutations start from (built once; a few seconds)."""
    weights = torch.load(ROOT / "fixtures" / "oneie_tiny.bin", weights_only=True)
    small = {k: v for k, v in list(weights["model"].items())[:6]}
    legacy = io.BytesIO()
    torch.save({"model": small, "config": {"bert_model_name": "x"}}, legacy,
               _use_new_zipfile_serialization=False)
    from safetensors.torch import save as save_safetensors

    st = save_safetensors({k: v.contiguous() for k, v in small.items()})
    onnx_bytes = (ROOT / "fixtures" / "optimum" / "tiny_bert_optimum.onnx").read_bytes()
    external, data = _with_external_data(onnx_bytes, workdir)
    found = [
        Seed("zip checkpoint", "checkpoint", {"model.bin": (ROOT / "fixtures" /
                                                             "oneie_tiny.bin").read_bytes()}),
        Seed("legacy checkpoint", "checkpoint", {"legacy.pt": legacy.getvalue()}),
        Seed("safetensors", "checkpoint", {"model.safetensors": st}),
        Seed("sharded, a shard missing", "dir", {
            "model.safetensors.index.json": json.dumps(
                {"weight_map": {k: "model-1.safetensors" for k in small}}).encode(),
            "model-2.safetensors": st}),
        Seed("sharded", "dir", {
            "model.safetensors.index.json": json.dumps(
                {"weight_map": {k: "model-1.safetensors" for k in small}}).encode(),
            "model-1.safetensors": st}),
        Seed("onnx inline", "onnx", {"model.onnx": onnx_bytes}),
        Seed("onnx external data", "onnx", {"model.onnx": external, "model.onnx.data": data}),
        Seed("onnx external data missing", "onnx", {"model.onnx": external}),
        Seed("onnx external data short", "onnx", {"model.onnx": external,
                                                  "model.onnx.data": data[: len(data) // 2]}),
        Seed("onnx with If and Loop", "onnx", {"model.onnx": _control_flow_model()}),
        Seed("onnx opset 7", "onnx", {"model.onnx": _opset7_model()}),
        Seed("onnx without inputs", "onnx", {"model.onnx": _no_input_model()}),
        Seed("onnx without graph", "onnx", {"model.onnx": helper.make_model(
            helper.make_graph([], "empty", [], [])).SerializeToString()}),
        Seed("zip with junk members", "checkpoint", {"junk.bin": _junk_zip()}),
        Seed("zip without its storages", "checkpoint", {"nostorage.bin": _zip_without_storage(
            (ROOT / "fixtures" / "oneie_tiny.bin").read_bytes())}),
    ]
    for name, obj in (("pickled list", [torch.zeros(2), 3]), ("pickled int", 7),
                      ("pickled string", "weights"), ("pickled tensor", torch.ones(3, 3)),
                      ("pickled dict without tensors", {"lr": 0.1, "epochs": 3})):
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        found.append(Seed(name, "checkpoint", {"obj.pt": buffer.getvalue()}))
    for payload_name, payload in _payloads().items():
        for legacy_format in (False, True):
            buffer = io.BytesIO()
            torch.save({"model": small, "x": payload}, buffer,
                       _use_new_zipfile_serialization=not legacy_format)
            fmt = "legacy" if legacy_format else "zip"
            found.append(Seed(f"malicious {payload_name} ({fmt})", "checkpoint",
                              {"evil.pt": buffer.getvalue()}))
    return found


class _Payload:
    """Unpickling this would call `function(*arguments)`."""

    def __init__(self, function: Callable, arguments: tuple) -> None:
        self.function, self.arguments = function, arguments

    def __reduce__(self):
        return self.function, self.arguments


def _payloads() -> dict[str, _Payload]:
    import subprocess

    touch = f"open('{MARKER}', 'w').write('ran')"
    return {
        "os.system": _Payload(os.system, (f"touch {MARKER}",)),
        "builtins.exec": _Payload(exec, (touch,)),
        "builtins.eval": _Payload(eval, (touch,)),
        "subprocess.call": _Payload(subprocess.call, (["touch", MARKER],)),
        "shutil.rmtree": _Payload(shutil.rmtree, (".",)),
    }


def _with_external_data(onnx_bytes: bytes, workdir: Path) -> tuple[bytes, bytes]:
    model = onnx.load_from_string(onnx_bytes)
    directory = workdir / "external-seed"
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(directory / "model.onnx"), save_as_external_data=True,
              location="model.onnx.data", size_threshold=0)
    return (directory / "model.onnx").read_bytes(), (directory / "model.onnx.data").read_bytes()


def _control_flow_model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence"])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    then_out = helper.make_tensor_value_info("then_y", TensorProto.FLOAT, None)
    else_out = helper.make_tensor_value_info("else_y", TensorProto.FLOAT, None)
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [2, 8])
    then_graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["then_y"])], "then", [], [then_out],
        [shape])
    else_graph = helper.make_graph([helper.make_node("Identity", ["x"], ["else_y"])], "else",
                                   [], [else_out])
    trip = helper.make_tensor("trip", TensorProto.INT64, [], [2])
    body_in = [helper.make_tensor_value_info("i", TensorProto.INT64, []),
               helper.make_tensor_value_info("c", TensorProto.BOOL, []),
               helper.make_tensor_value_info("acc", TensorProto.FLOAT, None)]
    body_out = [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
                helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, None)]
    body = helper.make_graph([helper.make_node("Identity", ["c"], ["c_out"]),
                              helper.make_node("Add", ["acc", "acc"], ["acc_out"])], "body",
                             body_in, body_out)
    nodes = [helper.make_node("If", ["cond"], ["branch"], then_branch=then_graph,
                              else_branch=else_graph),
             helper.make_node("Loop", ["trip", "cond", "branch"], ["y"], body=body)]
    graph = helper.make_graph(nodes, "control", [x, cond], [y], [trip])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]
                             ).SerializeToString()


def _opset7_model() -> bytes:
    x = helper.make_tensor_value_info("input_ids", TensorProto.FLOAT, ["batch", "sequence"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence"])
    graph = helper.make_graph([helper.make_node("Add", ["input_ids", "input_ids"], ["y"])],
                              "old", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 7)])
    model.ir_version = 3
    return model.SerializeToString()


def _no_input_model() -> bytes:
    value = helper.make_tensor("value", TensorProto.FLOAT, [2], [1.0, 2.0])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Constant", [], ["y"], value=value)], "const",
                              [], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]
                             ).SerializeToString()


def _junk_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00(X\x01junk")
        archive.writestr("archive/data/0", os.urandom(64))
        archive.writestr("archive/version", b"3\n")
    return buffer.getvalue()


def _zip_without_storage(data: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for item in source.infolist():
            if "/data/" not in item.filename:
                archive.writestr(item, source.read(item))
    return buffer.getvalue()


MUTATIONS = ("as is", "cut", "flip header", "flip", "noise", "text", "empty")


def mutate(data: bytes, mutation: str, rng: random.Random) -> bytes:
    if mutation == "as is":
        return data
    if mutation == "cut":
        return data[: rng.randrange(0, max(1, len(data)))]
    if mutation in ("flip header", "flip"):
        if not data:
            return data
        limit = min(len(data), 64) if mutation == "flip header" else len(data)
        position = rng.randrange(limit)
        changed = bytearray(data)
        changed[position] ^= rng.randrange(1, 256)
        return bytes(changed)
    if mutation == "noise":
        return rng.randbytes(rng.randrange(0, 4096))
    if mutation == "text":
        words = ["weights", "model", "bert", "{", "}", "\n", "0.5", "tensor", "é", "ONNX"]
        return " ".join(rng.choice(words) for _ in range(rng.randrange(1, 200))).encode()
    return b""


# A case that has not exited after this long is a hang: the contract says bounded time.
CASE_SECONDS = 120


class CaseTimeout(BaseException):
    """Raised in the case by SIGALRM; a BaseException so no `except Exception` swallows it."""


@dataclass
class Outcome:
    argv: list[str]
    code: int
    stderr: str
    stdout: str
    created: list[str]
    changed: list[str]
    ran_code: bool
    seconds: float = 0.0

    def problems(self) -> list[str]:
        """Every way this run broke the contract (empty: it kept it)."""
        found = []
        allowed = (0, 1, 2, 3) if self.argv[1:2] == ["check"] else (0, 1, 2)
        if self.code not in allowed:
            found.append(f"exit {self.code}")
        if "Traceback" in self.stderr + self.stdout:
            found.append("traceback")
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        if self.code == 2 and not 1 <= len(lines) <= 2:
            found.append(f"{len(lines)} lines on stderr")
        if self.created:
            found.append(f"created {self.created}")
        if self.changed:
            found.append(f"changed the input {self.changed}")
        if self.ran_code:
            found.append("ran code from the input")
        if self.code == -2:
            found.append(f"no exit after {CASE_SECONDS} s")
        return found


def run_case(case_dir: Path, files: dict[str, bytes], argv_template: list[str],
             seconds: int = CASE_SECONDS) -> Outcome:
    """Write the files, run the entry point in-process (stopped after `seconds`), and record
    what it did."""
    from diagnostics.__main__ import main as diagnostics_main
    from diagnostics.view import netron as netron_view
    from extractor.__main__ import main as extractor_main

    case_dir.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (case_dir / name).parent.mkdir(parents=True, exist_ok=True)
        if hasattr(content, "target"):  # hostile_onnx.Link: a symlink, e.g. out of the folder
            (case_dir / name).symlink_to(content.target)
        else:
            (case_dir / name).write_bytes(content)
    source = case_dir / next(iter(files)) if files else case_dir
    out = case_dir / "out"
    fill = {"{src}": str(source), "{onnx}": str(source), "{ckpt}": str(source),
            "{dir}": str(case_dir), "{out}": str(out)}
    argv = [fill.get(a, a) for a in argv_template]
    before = _digests(case_dir)
    stdout, stderr = io.StringIO(), io.StringIO()
    main = extractor_main if argv[0] == "x" else diagnostics_main
    cwd = os.getcwd()
    wait = netron_view.NetronView.wait
    netron_view.NetronView.wait = netron_view.NetronView.stop  # serve, then stop at once
    alarm = signal.signal(signal.SIGALRM, _time_out)
    start = time.perf_counter()
    try:
        os.chdir(case_dir)  # a payload writes its marker in the current directory
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                signal.alarm(seconds)
                code = main(argv[1:])
            except SystemExit as exc:  # argparse's own exits
                code = exc.code if isinstance(exc.code, int) else 1
            except CaseTimeout:
                code = -2
            except BaseException:
                import traceback

                traceback.print_exc(file=stderr)
                code = -1
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, alarm)
        os.chdir(cwd)
        netron_view.NetronView.wait = wait
    elapsed = time.perf_counter() - start
    after = _digests(case_dir)
    created = sorted(p for p in after if p not in before and p != MARKER)
    changed = sorted(p for p in before if after.get(p) != before[p])
    if code == 0 and argv[0] == "x" and "-o" in argv:
        created = [p for p in created if not p.startswith("out")]  # a valid input's output
    if code in (0, 1) and argv[:2] == ["d", "repair"]:
        created = [p for p in created if not p.startswith("out")]
    return Outcome(argv, code, stderr.getvalue(), stdout.getvalue(), created, changed,
                   (case_dir / MARKER).exists(), elapsed)


def _time_out(signum, frame) -> None:
    raise CaseTimeout()


def _digests(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in directory.rglob("*") if p.is_file()
    }


def cases(seed_list: list[Seed], rng: random.Random, count: int
          ) -> list[tuple[str, dict[str, bytes], list[str]]]:
    """`count` cases: (label, files, argv template), seeds, mutations and entry points mixed."""
    found = []
    for _ in range(count):
        seed = rng.choice(seed_list)
        mutation = rng.choice(MUTATIONS)
        first, *rest = seed.files
        files = {first: mutate(seed.files[first], mutation, rng),
                 **{name: seed.files[name] for name in rest}}
        if seed.kind == "dir":
            files = {name: mutate(content, mutation, rng) if name.endswith(".json") else content
                     for name, content in seed.files.items()}
        entry = rng.choice(list(ENTRY_POINTS))
        target = "{dir}" if seed.kind == "dir" or entry == "bench" else "{src}"
        argv = ENTRY_POINTS[entry](target, "{out}")
        found.append((f"{seed.name} / {mutation} / {entry}", files, argv))
    return found


def argument_cases(seed_list: list[Seed]) -> list[tuple[str, dict[str, bytes], list[str]]]:
    """Every bad argument, given a valid file (so only the argument is wrong)."""
    onnx_seed = next(s for s in seed_list if s.name == "onnx inline")
    zip_seed = next(s for s in seed_list if s.name == "zip checkpoint")
    return [(f"bad argument {' '.join(t[1:])}",
             dict(onnx_seed.files if "{onnx}" in t else zip_seed.files), t)
            for t in BAD_ARGUMENTS]


def numbers_of(outcomes: list[Outcome]) -> dict[str, int]:
    codes = np.bincount([o.code for o in outcomes if o.code >= 0], minlength=4)
    return {"cases": len(outcomes), "exit 0": int(codes[0]), "exit 1": int(codes[1]),
            "exit 2": int(codes[2]), "exit 3": int(codes[3]),
            "broke the contract": sum(bool(o.problems()) for o in outcomes)}


def hostile_cases(workdir: Path) -> list[tuple[str, dict[str, bytes], list[str]]]:
    """Every reproducer of hostile values in well-formed files, for both packages
    (`hostile_extract.py`, `hostile_onnx.py`): hangs, memory, markup, escapes."""
    from tests.builders import hostile_extract, hostile_onnx

    return hostile_extract.fixed_cases(workdir) + hostile_onnx.fixed_cases(workdir)


def structural_cases(rng: random.Random, count: int
                     ) -> list[tuple[str, dict[str, bytes], list[str]]]:
    """`count` cases drawn by the structural generators: hostile values (sizes, types,
    names, locations, nesting) in files that parse, half for each package."""
    from tests.builders import hostile_extract, hostile_onnx

    half = count // 2
    return (hostile_extract.generated_cases(rng, half)
            + hostile_onnx.generated_cases(rng, count - half))
