from __future__ import annotations

import json
from argparse import Namespace
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import save_file

from extractor.errors import CheckpointError, UnsafeCheckpointError
from extractor.resolve.checkpoint import load_checkpoint
from extractor.resolve.safe_unpickle import StandIn, attributes
from extractor.resolve.state_dicts import find_state_dict, strip_prefix


class NotAllowed:
    """A class weights_only unpickling must refuse; its data is still readable."""

    def __init__(self):
        self.bert_model_name = "bert-base-cased"


class RunsCode:
    """Unpickling this would call os.system."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Linear(3, 2)
        self.head = torch.nn.Sequential(torch.nn.Linear(3, 2))
        self.register_buffer("scale", torch.ones(1))
        torch.nn.init.ones_(self.head[0].weight)


def _weights() -> dict[str, torch.Tensor]:
    return {
        "bert.embeddings.word_embeddings.weight": torch.randn(10, 4),
        "bert.encoder.layer.0.attention.self.query.weight": torch.randn(4, 4),
        "head.weight": torch.randn(3, 4),
    }


def test_zip_checkpoint_is_memory_mapped_and_keeps_plain_containers(tmp_path):
    path = tmp_path / "model.bin"
    torch.save(
        {
            "model": _weights(),
            "config": {"bert_model_name": "x", "rels": {"A", "B"}},
            "vocabs": {"entity": ["O", "PER"]},
        },
        path,
    )
    ckpt = load_checkpoint(path)
    assert ckpt.format == "torch-zip" and ckpt.mmap
    assert ckpt.location == "checkpoint['model']"
    assert set(ckpt.state_dict) == set(_weights())
    assert ckpt.extra["config"]["rels"] == {"A", "B"}
    assert ckpt.extra["vocabs"] == {"entity": ["O", "PER"]}


def test_legacy_serialisation_loads_without_mmap(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"state_dict": _weights()}, path, _use_new_zipfile_serialization=False)
    ckpt = load_checkpoint(path)
    assert (ckpt.format, ckpt.mmap, ckpt.location) == (
        "torch-legacy",
        False,
        "checkpoint['state_dict']",
    )


def test_safetensors_file_and_directory(tmp_path):
    save_file(_weights(), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert load_checkpoint(tmp_path / "model.safetensors").format == "safetensors"
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.format == "directory:safetensors"
    assert ckpt.weights_dir == tmp_path and ckpt.path == tmp_path
    assert ckpt.state_dict["head.weight"].shape == (3, 4)


def test_sharded_directory_merges_every_shard(tmp_path):
    weights = _weights()
    keys = sorted(weights)
    save_file({k: weights[k] for k in keys[:2]}, tmp_path / "a.safetensors")
    save_file({k: weights[k] for k in keys[2:]}, tmp_path / "b.safetensors")
    index = {
        "weight_map": {k: ("a" if i < 2 else "b") + ".safetensors" for i, k in enumerate(keys)}
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert set(load_checkpoint(tmp_path).state_dict) == set(keys)


@pytest.mark.parametrize(
    "layout, location",
    [
        (lambda w: w, "top level"),
        (lambda w: {"model": w, "config": {}}, "checkpoint['model']"),
        (
            lambda w: {"state_dict": w, "epoch": 3, "optimizer_states": [{"state": {0: {}}}]},
            "checkpoint['state_dict']",
        ),
        (lambda w: {"module": w}, "checkpoint['module']"),
        (
            lambda w: {"model_state_dict": w, "optimizer_state_dict": {"state": {}}},
            "checkpoint['model_state_dict']",
        ),
        (
            lambda w: {"checkpoint": {"nested": {"weights": w}}},
            "checkpoint['checkpoint']['nested']['weights']",
        ),
    ],
)
def test_state_dict_is_found_in_every_usual_layout(layout, location):
    state_dict, found = find_state_dict(layout(OrderedDict(_weights())))
    assert found == location
    assert set(state_dict) == set(_weights())


def test_largest_state_dict_wins_over_a_small_one():
    obj = {"ema": {"w": torch.zeros(1)}, "model": _weights()}
    assert find_state_dict(obj)[1] == "checkpoint['model']"


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, zip_format):
    path = tmp_path / "evil.pt"
    marker = tmp_path / "ran"
    torch.save({"model": _weights(), "x": RunsCode(str(marker))}, path,
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(UnsafeCheckpointError, match="its pickle calls posix.system"):
        load_checkpoint(path)
    assert not marker.exists()


def test_classes_torch_does_not_allow_are_read_as_data_without_their_code(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"model": _weights(), "config": NotAllowed(), "args": Namespace(lr=0.1)}, path)
    ckpt = load_checkpoint(path)
    assert set(ckpt.stand_ins) == {f"{__name__}.NotAllowed", "argparse.Namespace"}
    assert isinstance(ckpt.extra["config"], StandIn)
    assert ckpt.extra["config"].bert_model_name == "bert-base-cased"
    assert attributes(ckpt.extra["args"]) == {"lr": 0.1}
    assert not ckpt.trusted and set(ckpt.state_dict) == set(_weights())
    assert load_checkpoint(path, trust=True).trusted


def test_a_whole_pickled_model_gives_its_state_dict_without_its_class(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save({"net": Net()}, path)
    ckpt = load_checkpoint(path)
    assert ckpt.location == "checkpoint['net'].state_dict()"
    assert list(ckpt.state_dict) == list(Net().state_dict())
    assert torch.equal(ckpt.state_dict["head.0.weight"], torch.ones(2, 3))


def test_trusted_load_of_a_missing_module_names_it_in_one_line(tmp_path):
    import sys
    import textwrap

    source = tmp_path / "src"
    source.mkdir()
    (source / "oneie_config.py").write_text(textwrap.dedent("""
        class Config:
            def __init__(self):
                self.bert_model_name = "bert-large-cased"
    """))
    sys.path.insert(0, str(source))
    try:
        import oneie_config

        torch.save({"model": _weights(), "config": oneie_config.Config()}, tmp_path / "c.pt")
    finally:
        sys.path.remove(str(source))
        sys.modules.pop("oneie_config", None)
    with pytest.raises(CheckpointError, match="module 'oneie_config', which is not importable: "
                       "make the source of the project that saved it importable \\(PYTHONPATH\\)"):
        load_checkpoint(tmp_path / "c.pt", trust=True)
    assert load_checkpoint(tmp_path / "c.pt").extra["config"].bert_model_name == "bert-large-cased"


def test_pickled_module_gives_its_state_dict_when_trusted(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save({"net": torch.nn.Linear(4, 3)}, path)
    ckpt = load_checkpoint(path, trust=True)
    assert ckpt.location == "checkpoint['net'].state_dict()"
    assert set(ckpt.state_dict) == {"weight", "bias"}


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.bin", b"", "is empty, not a PyTorch checkpoint"),
        ("text.bin", b"hello, this is a text file\n", "is a text file, not a PyTorch checkpoint"),
        # torch's unpickler raised IndexError (pop from empty list) on this one.
        ("note.bin", b"this is a text file, not a checkpoint", "is a text file"),
        ("config.json", b'{"model_type": "bert"}', "is a JSON file, not"),
        ("noise.safetensors", b"\x00" * 64, "not a readable safetensors file: no safetensors "
         "header"),
        ("cut.safetensors", b"\x10" + b"\x00" * 7 + b'{"a": {"dtype": ', "header that does not "
         "parse"),
        ("junk.zip", b"PK\x03\x04" + b"\x00" * 40, "a zip that does not open"),
        ("plain.pkl", b"\x80\x04K\x01.", "a Python pickle \\(not one torch.save wrote\\)"),
        ("model.onnx", b"\x08\x07\x12\x07pytorch", "an ONNX model.*python -m diagnostics"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_a_zip_that_is_not_a_torch_archive_names_what_it_holds(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "notes.zip", "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(CheckpointError, match="a zip without data.pkl \\(holds notes.txt\\)"):
        load_checkpoint(tmp_path / "notes.zip")


def test_a_sharded_index_with_a_missing_shard_says_which(tmp_path):
    save_file({"a": torch.zeros(1)}, tmp_path / "a.safetensors")
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "a.safetensors", "b": "b.safetensors"}}))
    with pytest.raises(CheckpointError, match="names shard 'b.safetensors', which is missing"):
        load_checkpoint(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "../a.safetensors"}}))
    with pytest.raises(CheckpointError, match="outside its directory"):
        load_checkpoint(tmp_path)


def test_truncated_checkpoints_are_reported_as_corrupt(tmp_path):
    for legacy in (False, True):
        path = tmp_path / f"full-{legacy}.pt"
        torch.save({"model": _weights()}, path, _use_new_zipfile_serialization=not legacy)
        cut = tmp_path / f"cut-{legacy}.pt"
        cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(cut)
        assert not isinstance(info.value, UnsafeCheckpointError)
        assert "corrupt" in str(info.value)


def test_missing_path_and_directory_without_weights(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nope.bin")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CheckpointError, match="directory without weights"):
        load_checkpoint(tmp_path)


def test_checkpoint_without_tensors_is_refused(tmp_path):
    path = tmp_path / "config_only.pt"
    torch.save({"config": {"a": 1}}, path)
    with pytest.raises(CheckpointError, match="no state dict"):
        load_checkpoint(path)


def test_strip_prefix_keeps_only_that_subtree():
    stripped = strip_prefix(_weights(), "bert.")
    assert sorted(stripped) == [
        "embeddings.word_embeddings.weight",
        "encoder.layer.0.attention.self.query.weight",
    ]
