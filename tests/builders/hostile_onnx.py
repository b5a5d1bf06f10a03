"""Hostile inputs for the diagnostics: well-formed files with values chosen to hurt.

Issue 19. Where `bad_inputs` corrupts bytes, these files parse: the hostility is in
the values. A shape that squares itself 64 times, a dummy batch of 10**11, an input
of 2**40 x 2**20 floats, an `.npz` whose header declares 8 TiB, markup (`[/]`,
`[link=...]`) and terminal escapes in names, external data that points outside the
model's folder. Each case is (label, files, argv template) in the format of
`bad_inputs.ENTRY_POINTS` and `BAD_ARGUMENTS` ("d" then the arguments; "{src}" or
"{onnx}" is the first file, "{dir}" the case directory, "{out}" the output path),
so `bad_inputs.run_case` runs it and `Outcome.problems()` judges the contract.

A symlink cannot be bytes: a `Link` value (a bytes subclass holding the target) is
one; `materialise_links(case_dir, files)` makes them and returns the other files
(`run_case` alone would write the target's path as a plain file: a harmless case).
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Case = tuple[str, dict[str, bytes], list[str]]

CHECK = ["d", "check", "{src}"]
PROBE = ["d", "check", "{src}", "--probe"]
REPAIR = ["d", "repair", "{src}", "-o", "{out}"]
MARKUP = ["[/]", "[link=http://x]n[/link]", "[bold]b", "\x1b[31mred", "a\nb", "[red]x[/red]"]


class Link(bytes):
    """A symlink in a case: `Link(target)`; the bytes are the target's path."""

    def __new__(cls, target: str) -> Link:
        return super().__new__(cls, target.encode())

    @property
    def target(self) -> str:
        return self.decode()


def materialise_links(case_dir: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    """Create the case's symlinks under `case_dir`; the plain files are returned."""
    plain = {}
    for name, content in files.items():
        if isinstance(content, Link):
            path = case_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to(content.target)
        else:
            plain[name] = content
    return plain


# -- builders ----------------------------------------------------------------------------------


def model_bytes(nodes, inputs, outputs, initializers=(), metadata=None, producer="pytorch",
                opset=17) -> bytes:
    graph = helper.make_graph(list(nodes), "hostile", list(inputs), list(outputs),
                              list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name=producer)
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def _ids(dims=("batch", "sequence"), name="input_ids"):
    return helper.make_tensor_value_info(name, TensorProto.INT64, list(dims))


def _out(name="y", elem=TensorProto.INT64):
    return helper.make_tensor_value_info(name, elem, None)


def frozen_reshape(node_name: str = "/encoder/Reshape", output: str = "y",
                   metadata: dict[str, str] | None = None, node_meta=None,
                   target=(2, 8, 1)) -> bytes:
    """input_ids[batch, sequence] -> Reshape to a literal [2, 8, 1]: one frozen shape."""
    shape = numpy_helper.from_array(np.array(target, np.int64), "target")
    node = helper.make_node("Reshape", ["input_ids", "target"], [output], name=node_name)
    for key, value in (node_meta or {}).items():
        entry = node.metadata_props.add()
        entry.key, entry.value = key, value
    return model_bytes([node], [_ids()], [_out(output)], [shape], metadata)


def arithmetic_chain(rounds: int = 64, ops: tuple[str, ...] = ("Mul", "Add")) -> bytes:
    """batch -> [Mul(v, v), Add(v, that)] x rounds -> Unsqueeze -> Concat [-1] -> Reshape."""
    axes = numpy_helper.from_array(np.array([0], np.int64), "axes")
    zero = numpy_helper.from_array(np.array(0, np.int64), "zero")
    rest = numpy_helper.from_array(np.array([-1], np.int64), "rest")
    nodes = [helper.make_node("Shape", ["input_ids"], ["shape"], name="shape"),
             helper.make_node("Gather", ["shape", "zero"], ["v0"], name="gather", axis=0)]
    for i in range(rounds):
        first, second = ops[i % len(ops)], ops[(i + 1) % len(ops)]
        nodes.append(helper.make_node(first, [f"v{i}", f"v{i}"], [f"m{i}"], name=f"m{i}"))
        nodes.append(helper.make_node(second, [f"v{i}", f"m{i}"], [f"v{i + 1}"], name=f"a{i}"))
    nodes += [helper.make_node("Unsqueeze", [f"v{rounds}", "axes"], ["u"], name="unsqueeze"),
              helper.make_node("Concat", ["u", "rest"], ["target"], name="concat", axis=0),
              helper.make_node("Reshape", ["input_ids", "target"], ["y"], name="reshape")]
    return model_bytes(nodes, [_ids()], [_out()], [axes, zero, rest])


def concat_doubling(rounds: int = 64) -> bytes:
    """A shape tensor concatenated with itself `rounds` times (2**rounds elements)."""
    start = numpy_helper.from_array(np.array([2, 8], np.int64), "c0")
    nodes = [helper.make_node("Concat", [f"c{i}", f"c{i}"], [f"c{i + 1}"], name=f"cat{i}",
                              axis=0) for i in range(rounds)]
    nodes.append(helper.make_node("Reshape", ["input_ids", f"c{rounds}"], ["y"], name="reshape"))
    return model_bytes(nodes, [_ids()], [_out()], [start])


def identity_chain(length: int) -> bytes:
    nodes = [helper.make_node("Identity", [f"t{i}" if i else "input_ids"], [f"t{i + 1}"],
                              name=f"id{i}") for i in range(length)]
    target = numpy_helper.from_array(np.array([2, 8], np.int64), "target")
    nodes.append(helper.make_node("Reshape", [f"t{length}", "target"], ["y"], name="reshape"))
    return model_bytes(nodes, [_ids()], [_out()], [target])


def huge_shape_constant(elements: int, as_attribute: bool) -> bytes:
    """A Reshape whose target has `elements` values (an initializer, or Constant value_ints)."""
    values = np.ones(elements, np.int64)
    if as_attribute:
        nodes = [helper.make_node("Constant", [], ["target"], name="const",
                                  value_ints=values.tolist())]
        initializers = []
    else:
        nodes, initializers = [], [numpy_helper.from_array(values, "target")]
    nodes.append(helper.make_node("Reshape", ["input_ids", "target"], ["y"], name="reshape"))
    return model_bytes(nodes, [_ids()], [_out()], initializers)


def rank_from_static_length(length: int, op: str) -> bytes:
    """A 1-D int64 input of static length `length` used as a shape: rank `length`."""
    shape = helper.make_tensor_value_info("shape", TensorProto.INT64, [length])
    if op == "ConstantOfShape":
        node = helper.make_node("ConstantOfShape", ["shape"], ["y"], name="fill")
        return model_bytes([node], [shape], [_out(elem=TensorProto.FLOAT)])
    node = helper.make_node("Reshape", ["input_ids", "shape"], ["y"], name="reshape")
    return model_bytes([node], [_ids(), shape], [_out()])


def image_model(dims, name="pixel_values") -> bytes:
    """A float input of the given dims through Relu, then a frozen Reshape to [3, -1]."""
    x = helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))
    target = numpy_helper.from_array(np.array([2, -1], np.int64), "target")
    nodes = [helper.make_node("Relu", [name], ["r"], name="relu"),
             helper.make_node("Reshape", ["r", "target"], ["y"], name="reshape")]
    return model_bytes(nodes, [x], [_out(elem=TensorProto.FLOAT)], [target])


def typed_input(kind: str) -> bytes:
    """A model whose second input is a string, a sequence, untyped or of undefined type."""
    if kind == "string":
        extra = helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])
    elif kind == "sequence":
        extra = helper.make_tensor_sequence_value_info("text", TensorProto.FLOAT, None)
    elif kind == "undefined":
        extra = helper.make_tensor_value_info("text", TensorProto.UNDEFINED, ["batch"])
    else:
        extra = onnx.ValueInfoProto(name="text")
    shape = numpy_helper.from_array(np.array([2, 8, 1], np.int64), "target")
    nodes = [helper.make_node("Reshape", ["input_ids", "target"], ["y"], name="reshape"),
             helper.make_node("Identity", ["text"], ["z"], name="passthrough")]
    z = (helper.make_tensor_sequence_value_info("z", TensorProto.FLOAT, None)
         if kind == "sequence" else onnx.ValueInfoProto(name="z", type=extra.type))
    return model_bytes(nodes, [_ids(), extra], [_out(), z], [shape])


def truncated_initializer(kind: str) -> bytes:
    """An int64 shape initializer whose data does not match its dims."""
    tensor = TensorProto(name="target", data_type=TensorProto.INT64, dims=[3])
    if kind == "raw":
        tensor.raw_data = np.array([2, 8, 1], np.int64).tobytes()[:-3]  # 21 bytes
    else:
        tensor.int64_data.extend([2, 8])  # two of three
    node = helper.make_node("Reshape", ["input_ids", "target"], ["y"], name="reshape")
    return model_bytes([node], [_ids()], [_out()], [tensor])


def external_data(location: str, offset: str | None = None, length: str | None = None,
                  ) -> bytes:
    """A frozen Reshape whose float weight lives in external data at `location`."""
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        if value is not None:
            entry = weight.external_data.add()
            entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    target = numpy_helper.from_array(np.array([2, 4], np.int64), "target")
    nodes = [helper.make_node("Add", ["x", "w"], ["s"], name="add"),
             helper.make_node("Reshape", ["s", "target"], ["y"], name="reshape")]
    return model_bytes(nodes, [x], [_out(elem=TensorProto.FLOAT)], [weight, target])


WEIGHTS = np.arange(4, dtype=np.float32).tobytes()


def npy_header(shape, dtype="<i8") -> bytes:
    """A .npy file that declares `shape` and holds only 16 bytes of data."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    header = header.encode("latin1")
    pad = 64 - (10 + len(header) + 1) % 64
    header += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 16


def npz(members: dict[str, bytes], compress: bool = False) -> bytes:
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name + ".npy", data)
    return buffer.getvalue()


def npz_declaring(name: str, declared: int) -> bytes:
    """A deflated member whose central directory declares `declared` bytes (a zip bomb's
    claim; the data inside is small and nothing checks it before the refusal)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(name + ".npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as member:
            member.write(npy_header((declared // 8,)))
        info.file_size = declared  # written into the central directory at close
    return buffer.getvalue()


def real_npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


# -- the fixed reproducers -------------------------------------------------------------------


def fixed_cases(workdir: Path) -> list[Case]:
    """Every reproducer of issue 19 (diagnostics side), one case per command it broke."""
    workdir.mkdir(parents=True, exist_ok=True)
    outside = workdir / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "weights.bin").write_bytes(WEIGHTS)
    chain = arithmetic_chain()
    ids = real_npz(input_ids=np.ones((2, 8), np.int64))
    cases: list[Case] = [
        ("v = v + v*v, 64 rounds: check", {"model.onnx": chain}, CHECK),
        ("v = v + v*v, 64 rounds: check --json", {"model.onnx": chain}, CHECK + ["--json"]),
        ("v = v + v*v, 64 rounds: repair", {"model.onnx": chain}, REPAIR),
        ("v = v*v + v, 64 rounds: check",
         {"model.onnx": arithmetic_chain(64, ("Add", "Mul"))}, CHECK),
        ("v = v + v, 200 rounds: check",
         {"model.onnx": arithmetic_chain(100, ("Add", "Add"))}, CHECK),
        ("v = v - v*v, 64 rounds: check",
         {"model.onnx": arithmetic_chain(64, ("Mul", "Sub"))}, CHECK),
        ("shape concatenated with itself 64 times: check", {"model.onnx": concat_doubling()},
         CHECK),
        ("20000 Identity nodes: check", {"model.onnx": identity_chain(20000)}, CHECK),
        ("Reshape target of 10**6 values (initializer): check",
         {"model.onnx": huge_shape_constant(10**6, False)}, CHECK),
        ("Reshape target of 10**6 values (Constant value_ints): check",
         {"model.onnx": huge_shape_constant(10**6, True)}, CHECK),
        ("ConstantOfShape of a static length 10**9: check",
         {"model.onnx": rank_from_static_length(10**9, "ConstantOfShape")}, CHECK),
        ("Reshape to a shape input of static length 10**9: check",
         {"model.onnx": rank_from_static_length(10**9, "Reshape")}, CHECK),
        # memory
        ("--inputs npy header declares (2**40, 8)",
         {"model.onnx": frozen_reshape(), "in.npz": npz({"input_ids": npy_header((2**40, 8))})},
         PROBE[:3] + ["--inputs", "in.npz"]),
        ("--inputs deflated member declares 16 GiB",
         {"model.onnx": frozen_reshape(), "in.npz": npz_declaring("input_ids", 16 * 2**30)},
         PROBE[:3] + ["--inputs", "in.npz"]),
        ("repair --inputs npy header declares (2**40, 8)",
         {"model.onnx": frozen_reshape(), "in.npz": npz({"input_ids": npy_header((2**40, 8))})},
         REPAIR + ["--inputs", "in.npz"]),
        ("metadata dummy_batch 99999999999: check --probe",
         {"model.onnx": frozen_reshape(metadata={"subgraft.dummy_batch": "99999999999",
                                                 "subgraft.dummy_sequence": "8"})}, PROBE),
        ("metadata dummy_batch 99999999999: repair",
         {"model.onnx": frozen_reshape(metadata={"subgraft.dummy_batch": "99999999999",
                                                 "subgraft.dummy_sequence": "8"})}, REPAIR),
        ("metadata dummy_batch superscript two: check",
         {"model.onnx": frozen_reshape(metadata={"subgraft.dummy_batch": "\u00b2",
                                                 "subgraft.dummy_sequence": "8"})}, CHECK),
        ("metadata dummy_batch superscript two: repair",
         {"model.onnx": frozen_reshape(metadata={"subgraft.dummy_batch": "\u00b2",
                                                 "subgraft.dummy_sequence": "8"})}, REPAIR),
        ("float input [1, 3, 2**20, 2**20]: check --probe",
         {"model.onnx": image_model([1, 3, 2**20, 2**20])}, PROBE),
        ("float input [1, 3, 2**20, 2**20]: repair",
         {"model.onnx": image_model([1, 3, 2**20, 2**20])}, REPAIR),
        ("float input [batch, 3, 2**20, 2**20]: check --probe",
         {"model.onnx": image_model(["batch", 3, 2**20, 2**20])}, PROBE),
        # JSON where ONNX belongs
        ("'[' x 100000 as an ONNX file: check", {"model.onnx": b"[" * 100000}, CHECK),
        ("'[' x 100000 as an ONNX file: repair", {"model.onnx": b"[" * 100000}, REPAIR),
        # ONNX mutations
        ("input dim -5: check --probe", {"model.onnx": image_model([2, -5])}, PROBE),
        ("input dim -5: repair", {"model.onnx": image_model([2, -5])}, REPAIR),
        ("int64 shape initializer raw_data cut: check",
         {"model.onnx": truncated_initializer("raw")}, CHECK),
        ("int64 shape initializer with fewer values than dims: check",
         {"model.onnx": truncated_initializer("typed")}, CHECK),
        ("Reshape with one input: check", {"model.onnx": model_bytes(
            [helper.make_node("Reshape", ["input_ids"], ["y"], name="reshape")], [_ids()],
            [_out()])}, CHECK),
        ("Reshape with one input: repair", {"model.onnx": model_bytes(
            [helper.make_node("Reshape", ["input_ids"], ["y"], name="reshape")], [_ids()],
            [_out()])}, REPAIR),
    ]
    for kind in ("string", "sequence", "undefined", "untyped"):
        cases.append((f"{kind} graph input: repair", {"model.onnx": typed_input(kind)}, REPAIR))
        cases.append((f"{kind} graph input: check --probe", {"model.onnx": typed_input(kind)},
                      PROBE))
    # markup and control characters in what the file names
    for text in MARKUP:
        shown = text.encode("unicode_escape").decode()
        cases += [
            (f"node name {shown}: check", {"model.onnx": frozen_reshape(node_name=text)}, CHECK),
            (f"node name {shown}: repair", {"model.onnx": frozen_reshape(node_name=text)},
             REPAIR),
            (f"graph output {shown}: check", {"model.onnx": frozen_reshape(output=text)}, CHECK),
        ]
    op = model_bytes([helper.make_node("[/]", ["input_ids"], ["y"], name="n")], [_ids()],
                     [_out()])
    cases += [
        ("op_type [/]: check", {"model.onnx": op}, CHECK),
        ("op_type [/]: repair", {"model.onnx": op}, REPAIR),
        ("pkg.torch.onnx metadata [/]: check", {"model.onnx": frozen_reshape(
            node_name="node_view", node_meta={
                "pkg.torch.onnx.name_scopes": "['[/]', '[bold]x', 'view']",
                "pkg.torch.onnx.class_hierarchy": "['[/]', '[link=http://x]C', 'aten.view']",
                "pkg.torch.onnx.stack_trace": 'File "[/]x.py", line 3, in f\n    [/]code'})},
         CHECK),
        ("folder name with [/]: check", {"x[/]model.onnx": frozen_reshape()}, CHECK),
        ("folder name with [/]: repair", {"x[/]model.onnx": frozen_reshape()}, REPAIR),
        ("graph name and doc with [/]: check --probe", {"model.onnx": frozen_reshape(
            node_name="[/]", metadata={"subgraft.exporter": "[/]"})}, PROBE),
    ]
    # external data outside the model's folder
    for label, location in (("absolute", str(outside / "weights.bin")),
                            ("../", "../outside/weights.bin"),
                            ("a/../../", "a/../../outside/weights.bin")):
        cases.append((f"external data location {label}: check",
                      {"model.onnx": external_data(location)}, CHECK))
        cases.append((f"external data location {label}: repair",
                      {"model.onnx": external_data(location)}, REPAIR))
    cases += [
        ("external data through a symlinked file: check --probe",
         {"model.onnx": external_data("weights.bin"),
          "weights.bin": Link(str(outside / "weights.bin"))}, PROBE),
        ("external data through a symlinked folder: repair",
         {"model.onnx": external_data("data/weights.bin"), "data": Link(str(outside))}, REPAIR),
        ("external data negative offset: check --probe",
         {"model.onnx": external_data("weights.bin", offset="-4"), "weights.bin": WEIGHTS},
         PROBE),
        ("external data length past the file: check --probe",
         {"model.onnx": external_data("weights.bin", offset="8", length="64"),
          "weights.bin": WEIGHTS}, PROBE),
        ("external data offset not a number: repair",
         {"model.onnx": external_data("weights.bin", offset="1e3"), "weights.bin": WEIGHTS},
         REPAIR),
        ("--inputs of the wrong dtype and a valid model: check",
         {"model.onnx": frozen_reshape(),
          "in.npz": real_npz(input_ids=np.ones((2, 8), np.float32))},
         PROBE[:3] + ["--inputs", "in.npz"]),
        ("--inputs valid: check", {"model.onnx": frozen_reshape(), "in.npz": ids},
         PROBE[:3] + ["--inputs", "in.npz"]),
    ]
    return cases


# Exit codes each fixed case may end with: a refusal is 2; an analysis that completes is a
# verdict (0 clean, 1 findings, 3 not judged).
REFUSED = (2,)
JUDGED = (0, 1, 3)


def expected_codes(label: str) -> tuple[int, ...]:
    """What a fixed case must exit with (by its label)."""
    judged = ("rounds", "Identity", "10**6", "10**9", "node name", "graph output", "op_type",
              "pkg.torch", "folder name", "graph name", "valid: check", "string graph",
              "sequence graph", "itself")
    if any(word in label for word in judged):
        return JUDGED if "repair" not in label else (0, 1)
    return REFUSED


# -- the structural generator --------------------------------------------------------------


_DIMS = [0, 1, 2, 3, 7, -1, -5, 2**31, 2**40, 2**62, "batch", "sequence", "", "[/]"]
_METADATA = ["0", "-3", "99999999999", "\u00b2", "1e9", "", " 2", "\u0663", "2", "8",
             "4096", "4097", "[/]", "9" * 40]
_SHAPE_VALUES = [2**62, -(2**63), 0, -1, -7, 2**31, 1, 8]
_LOCATIONS = ["/etc/passwd", "../x.bin", "a/../../x.bin", "..", ".", "", "\0x", "weights.bin",
              "a" * 300, "C:\\x.bin", "//x/y.bin", "data/../../x.bin"]
_ENTRIES = ["check", "check --probe", "check --inputs", "repair"]


def _name(rng: random.Random) -> str:
    return rng.choice(MARKUP + ["n", "/encoder/Reshape", "é\u202e", "\x07bell", "x" * 500])


def generated_cases(rng: random.Random, count: int) -> list[Case]:
    """`count` well-formed models (and npz files) with hostile values, each for one command."""
    makers = [_gen_dims, _gen_metadata, _gen_shape_constant, _gen_chain, _gen_names,
              _gen_external, _gen_npz]
    cases = []
    for index in range(count):
        maker = makers[index % len(makers)] if index < len(makers) else rng.choice(makers)
        label, files, entry = maker(rng)
        argv = {"check": CHECK, "check --probe": PROBE, "repair": REPAIR,
                "check --inputs": CHECK + ["--inputs", "in.npz"]}[entry]
        if entry == "check --inputs" and "in.npz" not in files:
            files["in.npz"] = _gen_npz(rng)[1]["in.npz"]
        cases.append((f"generated {index}: {label} / {entry}", files, list(argv)))
    return cases


def _gen_dims(rng: random.Random):
    rank = rng.choice([2, 4])
    dims = [rng.choice(_DIMS) for _ in range(rank)]
    dims = [d if d != "" else None for d in dims]
    if rank == 2 and rng.random() < 0.5:
        model = model_bytes([helper.make_node("Identity", ["input_ids"], ["y"], name="id")],
                            [_ids(dims)], [_out()])
    else:
        model = image_model(dims)
    return f"input dims {dims}", {"model.onnx": model}, rng.choice(_ENTRIES)


def _gen_metadata(rng: random.Random):
    batch, sequence = rng.choice(_METADATA), rng.choice(_METADATA)
    extra = {} if rng.random() < 0.5 else {"subgraft.exporter": _name(rng)}
    model = frozen_reshape(metadata={"subgraft.dummy_batch": batch,
                                     "subgraft.dummy_sequence": sequence, **extra})
    return f"dummy {batch!r} x {sequence!r}", {"model.onnx": model}, rng.choice(_ENTRIES)


def _gen_shape_constant(rng: random.Random):
    values = [rng.choice(_SHAPE_VALUES) for _ in range(rng.randrange(0, 6))]
    op = rng.choice(["Reshape", "Expand", "Tile", "ConstantOfShape", "Range"])
    target = numpy_helper.from_array(np.array(values, np.int64), "target")
    scalar = numpy_helper.from_array(np.array(values[0] if values else 0, np.int64), "scalar")
    if op == "Range":
        node = helper.make_node("Range", ["scalar", "scalar", "scalar"], ["y"], name="range")
    elif op == "ConstantOfShape":
        node = helper.make_node(op, ["target"], ["y"], name="n")
    else:
        node = helper.make_node(op, ["input_ids", "target"], ["y"], name="n")
    model = model_bytes([node], [_ids()], [_out()], [target, scalar])
    return f"{op} of {values}", {"model.onnx": model}, rng.choice(_ENTRIES)


def _gen_chain(rng: random.Random):
    rounds = rng.randrange(1, 120)
    ops = tuple(rng.choice(["Add", "Mul", "Sub", "Div"]) for _ in range(rng.randrange(1, 4)))
    return (f"chain of {rounds} x {ops}", {"model.onnx": arithmetic_chain(rounds, ops)},
            rng.choice(["check", "check --probe", "repair"]))


def _gen_names(rng: random.Random):
    model = frozen_reshape(node_name=_name(rng), output=_name(rng),
                           metadata={"subgraft.exporter": _name(rng)},
                           node_meta={"pkg.torch.onnx.name_scopes": repr([_name(rng), "v"]),
                                      "pkg.torch.onnx.stack_trace":
                                          f'File "{_name(rng)}", line 1, in f\n    {_name(rng)}'})
    folder = rng.choice(["", "[/]/", "[bold]x/", "a\x1bb/"])
    return "names with markup", {folder + "model.onnx": model}, rng.choice(_ENTRIES)


def _gen_external(rng: random.Random):
    location = rng.choice(_LOCATIONS)
    offset = rng.choice([None, "0", "-1", "999999999999", "x", "4"])
    length = rng.choice([None, "16", "-16", "2" * 30, "0"])
    files = {"model.onnx": external_data(location, offset, length), "weights.bin": WEIGHTS}
    return (f"external data {location!r} offset {offset} length {length}", files,
            rng.choice(_ENTRIES))


def _gen_npz(rng: random.Random):
    shape = tuple(rng.choice([0, 1, 2, 8, 2**20, 2**40, 2**62]) for _ in range(rng.choice([1, 2])))
    dtype = rng.choice(["<i8", "<f4", "|O", "<U5", "<c16", "|b1", ">i8"])
    members = {"input_ids": npy_header(shape, dtype)}
    if rng.random() < 0.3:
        members["other"] = npy_header((2, 8))
    if rng.random() < 0.3:
        data = npz_declaring("input_ids", rng.choice([2**34, 2**31, 2**62]))
    else:
        data = npz(members, compress=rng.random() < 0.5)
    files = {"model.onnx": frozen_reshape(), "in.npz": data}
    return f"npz {shape} {dtype}", files, "check --inputs"
