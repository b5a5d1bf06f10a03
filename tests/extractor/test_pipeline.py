from __future__ import annotations

import shutil

import numpy as np
import onnxruntime as ort

from extractor import extract


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
        step=steps.append,
    )
    in_process = extract(
        tmp_path / "oneie.bin", "bert.", tmp_path / "in_process", isolate_export=False
    )
    assert isolated.ok and in_process.ok
    assert isolated.export.to_dict() == in_process.export.to_dict()
    assert np.array_equal(
        _run(tmp_path / "isolated" / "model.onnx"), _run(tmp_path / "in_process" / "model.onnx")
    )
    assert steps == [
        "loading checkpoint",
        "resolving architecture",
        "building the fresh model",
        "saving the Hugging Face model",
        "running PyTorch at the parity shapes",
        "exporting to ONNX",
        "verifying PyTorch against onnxruntime",
        "checking the graph for frozen shapes",
    ]
