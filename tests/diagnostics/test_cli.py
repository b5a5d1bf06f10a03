"""python -m diagnostics check: exit codes, JSON, bad input as one line, rich rendering."""

from __future__ import annotations

import io
import json
import shutil

import onnx
import pytest
from rich.console import Console

from diagnostics import check
from diagnostics.__main__ import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from diagnostics.report import render_check


def test_healthy_model_exits_0(tiny, capsys):
    assert main(["check", str(tiny("healthy-torchscript"))]) == EXIT_OK
    assert "no frozen shapes found" in capsys.readouterr().out


def test_findings_exit_1_and_json_has_the_contract(tiny, capsys):
    assert main(["check", str(tiny("position-ids-int")), "--json"]) == EXIT_FAILED
    data = json.loads(capsys.readouterr().out)
    assert data["model"].endswith("position-ids-int.onnx")
    assert [i["name"] for i in data["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert data["inputs"][0]["dims"] == ["batch", "sequence"]
    finding = data["findings"][0]
    assert finding["kind"] == "folded-constant"
    assert finding["node"] == "/model/embeddings/position_embeddings/Gather"
    assert finding["op_type"] == "Gather"
    assert finding["frozen"] == [
        {"position": 1, "value": 8, "symbol": "sequence", "reason": "8 = export sequence"}
    ]
    assert data["probe"] == []
    assert {s["name"]: (s["input"], s["axis"]) for s in data["symbols"]} == {
        "batch": ("input_ids", 0),
        "sequence": ("input_ids", 1),
    }


def test_static_inputs_json_names_the_input(tiny, capsys):
    main(["check", str(tiny("static-inputs")), "--json"])
    data = json.loads(capsys.readouterr().out)
    static = [f for f in data["findings"] if f["kind"] == "static-input"]
    assert static[0]["node"] == "input_ids" and static[0]["op_type"] == ""


def test_missing_file_exits_2_with_one_line(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.onnx")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no such file" in err
    assert "Traceback" not in err


def test_not_onnx_exits_2(tmp_path, capsys):
    path = tmp_path / "model.onnx"
    path.write_text("this is not a protobuf, just some text\n" * 20)
    assert main(["check", str(path)]) == EXIT_USAGE
    assert "not an ONNX model" in capsys.readouterr().err


def test_truncated_protobuf_exits_2(tiny, tmp_path, capsys):
    data = tiny("healthy-torchscript").read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    assert main(["check", str(path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unknown_domain_exits_2(tiny, tmp_path, capsys):
    model = onnx.load(str(tiny("healthy-torchscript")))
    model.graph.node[5].domain = "com.example.custom"
    model.opset_import.add(domain="com.example.custom", version=1)
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    assert main(["check", str(path)]) == EXIT_USAGE
    assert "com.example.custom" in capsys.readouterr().err


def test_missing_external_data_still_checks_statically(tiny, tmp_path, capsys):
    model = onnx.load(str(tiny("attention-ints")))
    path = tmp_path / "external.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="external.onnx.data")
    (tmp_path / "external.onnx.data").unlink()
    assert main(["check", str(path), "--probe"]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "weights not read" in out
    assert "probe skipped" in out
    report = check(path, probe=True)
    assert report.weights == "missing"
    assert len(report.findings) == 8
    assert report.probe is not None and report.probe.skipped and not report.probe.runs


def test_external_data_present_is_not_read_for_the_static_check(tiny, tmp_path):
    model = onnx.load(str(tiny("healthy-dynamo")))
    path = tmp_path / "external.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="w.data", size_threshold=0)
    report = check(path)
    assert report.weights == "external"
    assert report.findings == ()


def test_directory_with_model_onnx_is_accepted(tiny, tmp_path):
    shutil.copy(tiny("healthy-torchscript"), tmp_path / "model.onnx")
    assert check(tmp_path).findings == ()


@pytest.mark.parametrize(
    "argv",
    [
        ["check"],
        ["nope"],
        ["check", "x.onnx", "--dummy", "batch=two"],
        ["check", "x.onnx", "--probe", "1by8"],
    ],
)
def test_usage_errors_exit_2(tiny, argv, capsys):
    argv = [str(tiny("healthy-torchscript")) if a == "x.onnx" else a for a in argv]
    assert main(argv) == EXIT_USAGE
    assert "Traceback" not in capsys.readouterr().err


def test_rendering_shows_summary_table_and_source(tiny):
    console = Console(file=io.StringIO(), width=200)
    render_check(console, check(tiny("dynamo-ints")))
    text = console.file.getvalue()
    assert "14 finding(s) (3 static-input, 3 folded-constant, 8 frozen-shape)" in text
    assert "node_view_3" in text
    assert "2 = export batch; 8 = export sequence" in text
    assert "broken_models.py:" in text
