from __future__ import annotations

from extractor.tiers.accuracy import Agreement
from extractor.tiers.corpus import Judgement
from extractor.variants import Variant, _drop

PASS = Agreement("f", 0.995, 0.98, 0.997, 0.99, 96)
MISS = Agreement("f", 0.995, 0.98, 0.9941, 0.99, 8)


def test_a_static_file_missing_its_judging_gate_is_removed_and_named_with_its_part(tmp_path):
    for name in ("model.int8.static.onnx", "model.int8.static.onnx.data", "model.int8.onnx"):
        (tmp_path / name).write_bytes(b"x")
    static = Variant("int8-static", "model.int8.static.onnx", agreement=PASS,
                     judged=Judgement({"single": PASS, "longest": MISS}), precision="int8")
    assert not static.ok, "a judging composition that misses fails the file"
    rejected = _drop(tmp_path, static)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.int8.onnx"]
    assert "longest" in rejected["why"] and "0.9941" in rejected["why"], rejected["why"]
    assert rejected["judged"]["ok"] is False


def test_a_rejected_openvino_file_takes_its_folder_with_it_when_empty(tmp_path):
    folder = tmp_path / "openvino"
    folder.mkdir()
    for name in ("model.int8.xml", "model.int8.bin"):
        (folder / name).write_bytes(b"x")
    static = Variant("openvino-int8", "openvino/model.int8.xml", agreement=MISS,
                     precision="int8")
    assert "selection" in _drop(tmp_path, static)["why"]
    assert not folder.exists()
