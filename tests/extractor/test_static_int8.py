from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from transformers import BertConfig, BertModel

from extractor.tiers.corpus import Batch, RealText
from extractor.tiers.quantize import quantize_each_within_gate, quantize_int8
from extractor.tiers.runtimes import onnxruntime_runner
from extractor.tiers.static_int8 import quantize_static_int8, static_quantizer

NAMES = ["input_ids", "attention_mask", "token_type_ids"]


class _Positional(torch.nn.Module):
    def __init__(self, model: BertModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, attn_implementation="eager")
    model = _Positional(BertModel(config).eval())
    path = tmp_path_factory.mktemp("static") / "tiny.onnx"
    feeds = _feeds([[5, 6, 7, 8, 9, 10, 11], [12, 13, 14]])
    axes = {name: {0: "batch", 1: "sequence"} for name in NAMES}
    torch.onnx.export(model, tuple(torch.from_numpy(feeds[n]) for n in NAMES), str(path),
                      input_names=NAMES, output_names=["last_hidden_state"],
                      dynamic_axes={**axes, "last_hidden_state": {0: "batch", 1: "sequence"}},
                      dynamo=False)
    return path


def _feeds(rows: list[list[int]]) -> dict[str, np.ndarray]:
    width = max(map(len, rows))
    ids = np.array([r + [0] * (width - len(r)) for r in rows], dtype=np.int64)
    mask = np.array([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=np.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


SENTENCE = [2, 17, 33, 41, 58, 62, 77, 3]
# Batch-mates no longer than SENTENCE: both batches have the same shape, only their
# other rows differ, and one of them spans a much wider range of activations.
MATES_A = [[2, 20, 21, 3], [2, 22, 3]]
MATES_B = [[2, 95, 96, 97, 98, 99, 3], [2, 90, 91, 92, 3]]


def _sentence_in(run, mates: list[list[int]]) -> np.ndarray:
    return run(_feeds([SENTENCE, *mates]))[0]


def test_static_ranges_make_a_sentence_independent_of_its_batch_mates(tiny_onnx):
    samples = [{k: v[:1] for k, v in _feeds([row]).items()}
               for row in ([2, 10, 11, 12, 3], SENTENCE, [2, 50, 60, 70, 80, 3])]
    static = quantize_static_int8(tiny_onnx, tiny_onnx.with_name("static.onnx"), samples)
    run = onnxruntime_runner(static)
    a, b = _sentence_in(run, MATES_A), _sentence_in(run, MATES_B)
    assert np.abs(a - b).max() <= 1e-6, f"static int8: a sentence moved by {np.abs(a - b).max()}"


def test_dynamic_ranges_let_batch_mates_move_a_sentence(tiny_onnx):
    # The contrast the static contract is about: dynamic int8 scales each MatMul's input
    # by the max over the whole batch.
    run = onnxruntime_runner(quantize_int8(tiny_onnx, tiny_onnx.with_name("dynamic.onnx")))
    a, b = _sentence_in(run, MATES_A), _sentence_in(run, MATES_B)
    assert np.abs(a - b).max() > 1e-6, "expected dynamic int8 to depend on batch-mates"


def test_static_int8_keeps_the_named_matmuls_in_fp32_and_quantizes_no_outputs(tiny_onnx):
    graph = onnx.load(str(tiny_onnx)).graph
    constants = {t.name for t in graph.initializer}
    weights = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in constants]
    kept = next(n for n in weights if "intermediate" in n.name)
    samples = [{k: v[:1] for k, v in _feeds([SENTENCE]).items()}]
    path = quantize_static_int8(tiny_onnx, tiny_onnx.with_name("kept.onnx"), samples,
                                keep_fp32=[kept.name])
    quantized = onnx.load(str(path)).graph
    # One QuantizeLinear per distinct input of a quantized weight MatMul (query, key and
    # value share theirs): none for the kept one, none on any output.
    inputs = {n.input[0] for n in weights if n is not kept}
    assert sum(n.op_type == "QuantizeLinear" for n in quantized.node) == len(inputs)
    made = {o: n.op_type for n in quantized.node for o in n.output}
    node = next(n for n in quantized.node if n.name == kept.name)
    assert made[node.input[0]] != "DequantizeLinear", f"expected {kept.name} left in fp32"


def test_a_search_gives_up_once_it_has_kept_its_share_of_nodes(tiny_onnx, tmp_path):
    feeds = _feeds([SENTENCE, *MATES_A])
    # fp32 "expected" that no quantization can follow: the gate never passes.
    wrong = Batch(feeds, np.random.default_rng(0).normal(size=(3, len(SENTENCE), 32))
                  .astype(np.float32))
    target = tmp_path / "q.onnx"
    result = quantize_each_within_gate(tiny_onnx, {target: quantize_int8},
                                       RealText(wrong, {"padded": [wrong]}),
                                       max_kept_share={target: 0.25})[target]
    assert not result.agreement.ok and not result.judged.ok
    nodes = len(result.kept_fp32) + result.quantized
    assert len(result.kept_fp32) == int(nodes * 0.25), (
        f"expected the search to stop at a quarter of {nodes} nodes, saw {result.kept_fp32}")


@pytest.mark.parametrize("kept", [
    ["layer.0/intermediate/dense"],  # its input goes back to float for the residual Add too
    ["layer.1/attention/self/query", "layer.1/attention/self/key",
     "layer.1/attention/self/value"],  # their shared input: float again for every reader
    ["layer.0/attention/self/query"],  # key and value still read its input quantized
    ["layer.1/attention/output/dense", "layer.1/intermediate/dense"],
])
def test_the_searchs_edit_gives_the_model_quantize_static_gives_without_the_kept_nodes(
        tiny_onnx, tmp_path, kept):
    source = tmp_path / "source.onnx"  # the quantizer caches its all-quantized file beside it
    shutil.copy(tiny_onnx, source)
    graph = onnx.load(str(source)).graph
    constants = {t.name for t in graph.initializer}
    keep = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in constants
            and any(part in n.name for part in kept)]
    assert len(keep) == len(kept)
    samples = [{k: v[:1] for k, v in _feeds([row]).items()}
               for row in ([2, 10, 11, 12, 3], SENTENCE, [2, 50, 60, 70, 80, 3])]
    quantize = static_quantizer(samples)
    quantize(source, tmp_path / "every.onnx", [])  # the search's first step
    edited = quantize(source, tmp_path / "edited.onnx", keep)
    fresh = quantize_static_int8(source, tmp_path / "fresh.onnx", samples, keep_fp32=keep)
    assert _dequantized_inputs(edited) == _dequantized_inputs(fresh)
    assert _op_counts(edited) == _op_counts(fresh)
    feeds = _feeds([SENTENCE, *MATES_B])
    gap = np.abs(onnxruntime_runner(edited)(feeds)[0] - onnxruntime_runner(fresh)(feeds)[0]).max()
    assert gap <= 1e-6, f"the edit is {gap} away from quantizing without {kept}"


def _dequantized_inputs(path: Path) -> set[tuple[str, int]]:
    """Which inputs of which MatMuls are read through a DequantizeLinear."""
    graph = onnx.load(str(path)).graph
    made = {o: n.op_type for n in graph.node for o in n.output}
    return {(n.name, i) for n in graph.node if n.op_type == "MatMul"
            for i, name in enumerate(n.input) if made.get(name) == "DequantizeLinear"}


def _op_counts(path: Path) -> Counter[str]:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)
