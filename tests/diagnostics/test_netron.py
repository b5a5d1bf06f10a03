"""Netron reporter at the HTTP level: what the server answers, what it serves, that it stops."""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import socket
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from builders.processes import output_until_serving, start_cli
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console

import diagnostics
from diagnostics.__main__ import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from diagnostics.errors import ServeError
from diagnostics.report import render_netron
from diagnostics.view.annotate import neighbourhood
from diagnostics.view.netron import open_in_netron

REPO = Path(__file__).resolve().parents[2]
FROZEN = "/model/encoder/layer.0/attention/self/Reshape"


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return response.read()


def _served_model(url: str) -> tuple[str, onnx.ModelProto]:
    """The page names the model as /data/<name> in a meta tag; fetch and parse those bytes."""
    page = _get(url + "/").decode()
    path = re.search(r'<meta name="file" content="(/data/[^"]+)">', page)[1]
    return path, onnx.load_from_string(_get(url + path))


def _port_open(address: tuple[str, int]) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(address) == 0


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_served_copy_carries_the_finding_on_the_flagged_node(tiny, tmp_path):
    model = tiny("attention-ints")
    before = _sha(model)
    report = diagnostics.check(model)
    view = report.open_in_netron(browse=False, directory=tmp_path)
    try:
        assert _port_open(view.address)
        path, served = _served_model(view.url)
        assert path == "/data/attention-ints.annotated.onnx"
        node = next(n for n in served.graph.node if n.name == FROZEN)
        props = {p.key: p.value for p in node.metadata_props}
        assert props["subgraft.kind"] == "frozen-shape"
        assert props["subgraft.finding"] == "#0 frozen-shape"
        assert props["subgraft.frozen"].endswith("elements: 2->batch, 8->sequence")
        assert props["subgraft.origin"] == "2 = export batch; 8 = export sequence"
        assert props["subgraft.source"].startswith("model.encoder.layer.0.attention.self")
        assert "batch = Shape(input_ids)[0]" in props["subgraft.suggested repair"]
        assert node.doc_string.startswith("subgraft finding #0: frozen-shape")
        flagged = {n.name for n in served.graph.node if n.metadata_props}
        assert flagged == {f.node for f in report.findings}
        assert view.flagged[0] == FROZEN
    finally:
        view.stop()
    assert not view.alive
    assert not _port_open(view.address)
    assert _sha(model) == before


def test_neighbourhood_is_valid_and_holds_the_frozen_node_and_its_shape(tiny, tmp_path):
    model = tiny("attention-ints")
    report = diagnostics.check(model)
    with open_in_netron(report, browse=False, directory=tmp_path) as view:
        assert view.focus == FROZEN
        _, near = _served_model(view.focus_url)
    onnx.checker.check_model(near, full_check=True)
    names = {n.name: n for n in near.graph.node}
    assert FROZEN in names
    shape = report.findings[0].tensor
    assert names[FROZEN].input[1] == shape
    producer = next(n for n in near.graph.node if shape in n.output)
    assert producer.op_type == "Constant"  # the literal [2, 8, 4, 16] the exporter baked in
    assert {p.key for p in names[FROZEN].metadata_props} >= {"subgraft.kind", "subgraft.frozen"}
    assert len(near.graph.node) < 20 < report.nodes
    assert view.neighbourhood.is_file() and view.annotated.is_file()
    assert not _port_open(view.focus_address)


def _shape_chain_model() -> onnx.ModelProto:
    """x[b, s, 64] -> Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [8, 4, 16]))."""
    nodes = [
        helper.make_node("Relu", ["x"], ["h"], name="relu"),
        helper.make_node("Shape", ["h"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"], name="unsqueeze"),
        helper.make_node("Concat", ["batch1", "frozen"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["h", "target"], ["r"], name="reshape"),
        helper.make_node("Transpose", ["r"], ["t"], name="transpose", perm=[0, 2, 1, 3]),
        helper.make_node("Sigmoid", ["t"], ["y"], name="sigmoid"),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(np.array(0, np.int64), "zero"),
            numpy_helper.from_array(np.array([0], np.int64), "axes"),
            numpy_helper.from_array(np.array([8, 4, 16], np.int64), "frozen"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_neighbourhood_follows_the_shape_chain_past_the_hop_limit():
    near = ir.to_proto(neighbourhood(ir.from_proto(_shape_chain_model()), "reshape", hops=1))
    onnx.checker.check_model(near, full_check=True)
    ops = [n.op_type for n in near.graph.node]
    assert ops == ["Relu", "Shape", "Gather", "Unsqueeze", "Concat", "Reshape", "Transpose"]
    assert {t.name for t in near.graph.initializer} == {"zero", "axes", "frozen"}
    assert [i.name for i in near.graph.input] == ["x"]


def test_two_views_in_one_process_each_serve_their_own_model(tiny, tmp_path):
    frozen, healthy = tiny("attention-ints"), tiny("healthy-torchscript")
    first = open_in_netron(diagnostics.check(frozen), browse=False, directory=tmp_path / "a")
    second = open_in_netron(diagnostics.check(healthy), browse=False, directory=tmp_path / "b")
    try:
        assert _served_model(first.url)[0] == "/data/attention-ints.annotated.onnx"
        assert _served_model(second.url)[0] == "/data/healthy-torchscript.annotated.onnx"
        assert second.focus_url is None  # nothing flagged: no neighbourhood
    finally:
        first.stop()
        second.stop()


def test_huge_external_weights_are_never_read(tmp_path):
    # 1.3 GB of external weights as a sparse file: opening it must not read or copy them.
    size = 325_000_000  # float32 elements: 1.3 GB
    (tmp_path / "model.onnx.data").touch()
    os.truncate(tmp_path / "model.onnx.data", size * 4)
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[size])
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="model.onnx.data")
    weight.external_data.add(key="length", value=str(size * 4))
    inline = numpy_helper.from_array(np.ones(300_000, np.float32), "big_inline")  # 1.2 MB
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["x", "w"], ["y"], name="add"),
            helper.make_node("Mul", ["y", "big_inline"], ["z"], name="mul"),
        ],
        "huge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [size])],
        [weight, inline],
    )
    path = tmp_path / "model.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    before = _sha(path)
    report = diagnostics.check(path)
    with open_in_netron(report, browse=False, focus="add", directory=tmp_path / "out") as view:
        _, served = _served_model(view.url)
        _, near = _served_model(view.focus_url)
    assert view.served_bytes < 20_000
    tensors = {t.name: t for t in served.graph.initializer}
    assert tensors["w"].data_location == TensorProto.EXTERNAL  # the reference is kept
    assert not tensors["big_inline"].raw_data and list(tensors["big_inline"].dims) == [300_000]
    onnx.checker.check_model(near)  # weights it does not hold become typed inputs
    assert {i.name for i in near.graph.input} == {"x", "w", "big_inline"}
    assert _sha(path) == before


def test_port_taken_is_a_user_error(tiny):
    report = diagnostics.check(tiny("attention-ints"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ServeError, match="cannot serve"):
            open_in_netron(report, browse=False, port=taken.getsockname()[1])


def test_unknown_focus_is_a_user_error_exit_2(tiny, capsys):
    model = str(tiny("attention-ints"))
    assert main(["show", model, "--node", "no/such/node", "--no-browser"]) == EXIT_USAGE
    assert "no node or input named 'no/such/node'" in capsys.readouterr().err
    assert main(["show", model, "--port", "70000"]) == EXIT_USAGE


def test_terminal_lists_the_exact_names_to_find(tiny, tmp_path):
    report = diagnostics.check(tiny("attention-ints"))
    buffer = io.StringIO()
    with open_in_netron(report, browse=False, directory=tmp_path) as view:
        render_netron(Console(file=buffer, width=100), view, report)
    text = buffer.getvalue()
    assert view.url in text and view.focus_url in text
    assert re.search(rf'^  #0 frozen-shape +"{re.escape(FROZEN)}"$', text, re.M)
    assert len(re.findall(r"^  #\d+ ", text, re.M)) == len(report.findings)
    assert "no browser opened" in text


@pytest.mark.parametrize(
    ("command", "code"), [(["check", "--netron"], EXIT_FAILED), (["show"], EXIT_OK)]
)
def test_cli_serves_until_ctrl_c_then_stops(tiny, command, code):
    model = str(tiny("attention-ints"))
    process = start_cli("diagnostics", [command[0], model, *command[1:], "--no-browser",
                                        "--port", "0"], REPO)
    try:
        text, url = output_until_serving(process)
        assert _served_model(url)[0] == f"/data/{Path(model).stem}.annotated.onnx"
        assert f'"{FROZEN}"' in text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == code
    finally:
        if process.poll() is None:
            process.kill()
    host, port = url.removeprefix("http://").split(":")
    assert not _port_open((host, int(port)))


def test_repair_netron_annotates_what_repair_did(tiny, tmp_path):
    model = str(tiny("attention-ints"))
    process = start_cli("diagnostics", ["repair", model, "--dry-run", "--netron",
                                        "--no-browser"], REPO)
    try:
        text, url = output_until_serving(process)
        _, served = _served_model(url)
        node = next(n for n in served.graph.node if n.name == FROZEN)
        props = {p.key: p.value for p in node.metadata_props}
        assert props["subgraft.repair"].startswith(("applied: ", "refused: "))
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()


def test_the_temporary_copies_go_when_serving_stops_or_fails(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp puts its folders
    report = diagnostics.check(tiny("attention-ints"))
    with open_in_netron(report, browse=False) as view:
        assert view.annotated.is_file()
    assert not view.annotated.exists() and list(tmp_path.iterdir()) == []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ServeError):
            open_in_netron(report, browse=False, port=taken.getsockname()[1])
    assert list(tmp_path.iterdir()) == [], "a failed start leaves no folder"
    kept = tmp_path / "kept"
    with open_in_netron(report, browse=False, directory=kept) as view:
        pass
    assert view.annotated.is_file(), "a folder the caller names is kept"
