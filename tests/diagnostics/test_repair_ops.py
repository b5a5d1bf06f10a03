"""Expand, Slice and Tile frozen by Python ints, found, repaired and checked against PyTorch.

The attention builders in broken_models freeze Reshapes and folded constants; this
encoder freezes the other shape consumers the same real way: sizes read with
`int(x.size(n))` while tracing, exported by the TorchScript exporter with correct
dynamic axes.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch

from diagnostics import check, repair

VOCAB, HIDDEN = 128, 16


class FrozenOpsEncoder(torch.nn.Module):
    """Mask expansion, a slice and a tile, each sized with Python ints."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embeddings = torch.nn.Embedding(VOCAB, HIDDEN)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        x = self.embeddings(input_ids)
        batch, sequence = int(x.size(0)), int(x.size(1))
        mask = attention_mask[:, None, None, :].expand(batch, 1, sequence, sequence)
        scores = (x @ x.transpose(1, 2))[:, None] + (1.0 - mask.to(x.dtype)) * -1e4
        context = scores.softmax(-1)[:, 0] @ x
        first = context[:, :sequence]  # a no-op at the dummy, a truncation elsewhere
        tiled = x.mean(1, keepdim=True).repeat(1, sequence, 1)
        return first + tiled


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = FrozenOpsEncoder().eval()
    path = tmp_path_factory.mktemp("ops") / "frozen_ops.onnx"
    ids = torch.randint(0, VOCAB, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, mask), str(path), dynamo=False,
                          input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                        "last_hidden_state": axes})
    return model, path


def _inputs(batch: int, sequence: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch * 100 + sequence)
    mask = np.ones((batch, sequence), dtype=np.int64)
    mask[-1, sequence // 2:] = 0
    return {"input_ids": rng.integers(0, VOCAB, (batch, sequence)), "attention_mask": mask}


def test_expand_slice_and_tile_are_found(exported):
    _, path = exported
    found = {(f.kind, f.node, f.op_type): f.frozen_text for f in check(path).findings}
    assert found == {
        ("folded-constant", "/Where", "Where"): "2->batch, 8->sequence, 8->sequence",
        ("frozen-shape", "/Slice", "Slice"): "8->sequence",
        ("folded-constant", "/Tile", "Tile"): "8->sequence",
    }


def test_repaired_expand_slice_and_tile_match_pytorch_at_new_shapes(exported, tmp_path):
    model, path = exported
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    broken = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="Expand|Where|Tile|Add|Slice|broadcast|dimension"):
        broken.run(None, _inputs(1, 34))

    report = repair(path, tmp_path / "fixed.onnx")
    assert report.ok, report.verification
    assert [(c.node, c.before, c.after) for c in report.changes] == [
        ("/Where", "[2, 1, 8, 8]", "[batch, 1, sequence, sequence]"),
        ("/Slice", "[8]", "[sequence]"),
        ("/Tile", "[1, 8, 1]", "[1, sequence, 1]"),
    ]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    fixed = ort.InferenceSession(str(tmp_path / "fixed.onnx"), providers=["CPUExecutionProvider"])
    for batch, sequence in [(1, 34), (3, 11), (2, 8), (4, 130)]:
        feeds = _inputs(batch, sequence)
        got = fixed.run(None, feeds)[0]
        with torch.no_grad():
            want = model(*(torch.from_numpy(v) for v in feeds.values())).numpy()
        assert got.shape == (batch, sequence, HIDDEN)
        assert np.abs(got - want).max() < 1e-4
    assert check(tmp_path / "fixed.onnx").findings == ()


class RelativeBias(torch.nn.Module):
    """A relative-position bias `(j - i) * weight` built from Python ints: the exporter folds
    it into one [8, 8] constant, frozen on both axes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embeddings = torch.nn.Embedding(VOCAB, HIDDEN)
        self.slope = torch.nn.Parameter(torch.tensor(0.25))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids)
        n = int(x.size(1))
        relative = torch.arange(n)[None, :] - torch.arange(n)[:, None]
        scores = x @ x.transpose(1, 2) + relative.to(x.dtype) * -self.slope
        return scores.softmax(-1) @ x


def test_a_constant_frozen_on_two_axes_is_rebuilt_when_affine(tmp_path):
    model = RelativeBias().eval()
    path = tmp_path / "relative.onnx"
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randint(0, VOCAB, (2, 8)),), str(path), dynamo=False,
                          input_names=["input_ids"], output_names=["out"],
                          dynamic_axes={"input_ids": axes, "out": axes})
    (finding,) = check(path).findings
    assert finding.kind == "folded-constant" and [v.position for v in finding.frozen] == [0, 1]
    report = repair(path, tmp_path / "fixed.onnx")
    assert report.ok, (report.refusals, report.verification.failures)
    (change,) = report.changes
    assert change.after == "0.25*i0 - 0.25*i1 over [sequence, sequence]"
    session = ort.InferenceSession(str(tmp_path / "fixed.onnx"), providers=["CPUExecutionProvider"])
    for batch, sequence in [(1, 5), (3, 13), (2, 40)]:
        ids = torch.randint(0, VOCAB, (batch, sequence))
        with torch.no_grad():
            want = model(ids).numpy()
        got = session.run(None, {"input_ids": ids.numpy()})[0]
        assert np.abs(want - got).max() < 1e-5, (batch, sequence)
