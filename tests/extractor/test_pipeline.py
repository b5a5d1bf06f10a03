from __future__ import annotations

import io
import shutil

import numpy as np
import onnxruntime as ort
from rich.console import Console

from extractor import extract
from extractor.report import render_extraction


def _run(path, batch=2, sequence=40):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {
        "input_ids": rng.integers(5, 128, (batch, sequence)),
        "attention_mask": np.ones((batch, sequence), dtype=np.int64),
        "token_type_ids": np.zeros((batch, sequence), dtype=np.int64),
    }
    return session.run(["last_hidden_state"], feeds)[0]


def test_isolated_export_gives_the_same_model_as_in_process(tmp_path, fixture_checkpoint):
    shutil.copy(fixture_checkpoint, tmp_path / "oneie.bin")
    shutil.copytree(fixture_checkpoint.parent / "tiny-bert", tmp_path / "tiny-bert")
    steps: list[str] = []
    isolated = extract(
        tmp_path / "oneie.bin",
        "bert.",
        tmp_path / "isolated",
        isolate_export=True,
        optimize=True,
        step=steps.append,
    )
    in_process = extract(
        tmp_path / "oneie.bin", "bert.", tmp_path / "in_process", isolate_export=False,
        optimize=True,
    )
    assert isolated.ok and in_process.ok
    assert isolated.export.to_dict() == in_process.export.to_dict()
    assert isolated.variants[0].fused.fused == in_process.variants[0].fused.fused
    # Bit for bit: both files run here, on the same kernels, whichever this CPU picks.
    for name in ("model.onnx", "model.optimized.onnx"):
        got, want = _run(tmp_path / "isolated" / name), _run(tmp_path / "in_process" / name)
        assert np.array_equal(got, want), (
            f"{name}: expected the isolated export to give the in-process one's numbers "
            f"exactly, saw max abs {np.abs(got - want).max():.2e}")
    assert steps == [
        "loading checkpoint",
        "resolving architecture",
        "building the fresh model",
        "saving the Hugging Face model",
        "running PyTorch at the parity shapes",
        "exporting to ONNX",
        "verifying PyTorch against onnxruntime",
        "checking the graph for frozen shapes",
        "fusing attention, layer norms and GELU",
    ]


def test_no_pooler_exports_only_the_tokens_in_every_file(tmp_path, fixture_checkpoint):
    shutil.copy(fixture_checkpoint, tmp_path / "oneie.bin")
    shutil.copytree(fixture_checkpoint.parent / "tiny-bert", tmp_path / "tiny-bert")
    # The child process reloads the saved model: it must not grow a random pooler back.
    report = extract(tmp_path / "oneie.bin", "bert.", tmp_path / "out", pooler=False,
                     isolate_export=True, optimize=True, quantize="int8")
    assert report.ok
    assert {r.output for r in report.parity.results} == {"last_hidden_state"}
    for name in ("model.onnx", "model.optimized.onnx", "model.int8.onnx"):
        session = ort.InferenceSession(str(tmp_path / "out" / name),
                                       providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == ["last_hidden_state"]
    summary = io.StringIO()
    render_extraction(Console(file=summary, width=200), report)
    assert "extract without --no-pooler for that" in summary.getvalue(), summary.getvalue()
    full = extract(tmp_path / "oneie.bin", "bert.", tmp_path / "full")
    assert full.ok
    summary = io.StringIO()
    render_extraction(Console(file=summary, width=200), full)
    assert "--no-pooler" not in summary.getvalue(), "no pooler hint when the pooler is kept"
    got, want = _run(tmp_path / "out" / "model.onnx"), _run(tmp_path / "full" / "model.onnx")
    assert np.allclose(got, want, atol=1e-6), (
        f"expected the tokens with and without the pooler within 1e-6, saw max abs "
        f"{np.abs(got - want).max():.2e}")
