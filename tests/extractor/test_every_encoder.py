"""Every supported model type, from a composite checkpoint, with no flags but its path.

Each export must match the tiny encoder the checkpoint was made from within
1e-4, or the run must be refused with the exporter's reason in one line.
"""

from __future__ import annotations

import json

import pytest
from builders.layouts import assert_matches
from builders.tiny_encoders import composite_checkpoint

from extractor.__main__ import EXIT_OK, EXIT_USAGE, main
from extractor.resolve.encoders import ENCODER_TYPES

# Types this stack cannot export with dynamic batch and sequence, and why.
REFUSED = {
    "funnel": "it specialised input_ids sequence to the dummy's 17",
    "longformer": "Could not guard on data-dependent expression",
}


@pytest.mark.parametrize("model_type", [t for t in ENCODER_TYPES if t not in REFUSED])
def test_extracts_and_matches_the_encoder_it_came_from(tmp_path, capsys, model_type):
    path, encoder = composite_checkpoint(tmp_path, model_type)
    out = tmp_path / "out"
    assert main([str(path), "-o", str(out)]) == EXIT_OK, capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    assert report["prefix"] == "encoder."
    assert report["config"]["model_type"] == model_type
    assert model_type in report["source"]["looks_like"]
    assert report["frozen_shapes"] == []
    assert_matches(out / "model.onnx", encoder)


@pytest.mark.parametrize("model_type", sorted(REFUSED))
def test_unexportable_types_are_refused_in_one_line(tmp_path, capsys, model_type):
    path, _ = composite_checkpoint(tmp_path, model_type)
    assert main([str(path), "-o", str(tmp_path / "out")]) == EXIT_USAGE
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith(f"error: {model_type} cannot be exported with dynamic batch and "
                           "sequence by the dynamo exporter: ")
    assert REFUSED[model_type] in line and "Traceback" not in captured.out
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*"))


def test_block_sparse_big_bird_is_refused_before_any_work_and_full_attention_is_offered(
    tmp_path, capsys
):
    path, _ = composite_checkpoint(tmp_path, "big_bird")
    config = tmp_path / "tiny-big_bird" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()),
                                  "attention_type": "block_sparse"}))
    assert main([str(path), "-o", str(tmp_path / "out")]) == EXIT_USAGE
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "switches between full attention (up to 36 tokens)" in line
    assert "--set attention_type=original_full" in line
    argv = [str(path), "-o", str(tmp_path / "out"), "--set", "attention_type=original_full"]
    assert main(argv) == EXIT_OK
