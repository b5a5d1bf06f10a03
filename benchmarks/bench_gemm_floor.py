"""How fast can an fp32 export be? The matrix products alone, timed on this machine.

    python -m benchmarks.bench_gemm_floor [--threads 2] [--shapes 1x128,8x128,1x16]

An encoder layer's fp32 work is mostly five matrix products: query/key/value,
the attention output, the two feed-forward ones, and attention's two
activation-by-activation products. This script times each product alone in
onnxruntime (a one-node MatMul graph with constant weights, as in an exported
model, warm in cache) and in PyTorch, times PyTorch eager on the whole bert-base
(random weights) in the same run, and prints the ceiling that sets on any fp32
ONNX model: PyTorch eager's time over the sum of the products. No fusion or
graph rewrite can remove a product, so no fp32 model beats that ratio here.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from transformers import BertConfig, BertModel


def layer_products(batch: int, sequence: int,
                   config: BertConfig) -> list[tuple[int, int, int, int]]:
    """(count, m, k, n) of one layer's products; count repeats one (m, k, n) product."""
    tokens, hidden, inner = batch * sequence, config.hidden_size, config.intermediate_size
    heads = batch * config.num_attention_heads
    head = hidden // config.num_attention_heads
    return [
        (1, tokens, hidden, 3 * hidden),  # query, key, value
        (1, tokens, hidden, hidden),  # attention output
        (1, tokens, hidden, inner),  # feed-forward in
        (1, tokens, inner, hidden),  # feed-forward out
        (heads, sequence, head, sequence),  # scores: Q K^T per head
        (heads, sequence, sequence, head),  # scores times V per head
    ]


def _median_ms(run, repeats: int = 30) -> float:
    for _ in range(5):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _onnxruntime_product(m: int, k: int, n: int, threads: int):
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(k, n)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "product",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    x = rng.normal(size=(m, k)).astype(np.float32)
    return lambda: session.run(None, {"x": x})


def _pytorch_product(m: int, k: int, n: int):
    a, b = torch.randn(m, k), torch.randn(k, n)
    return lambda: torch.mm(a, b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", default="1x128,8x128,1x16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = BertConfig()  # bert-base
    model = BertModel(config).eval()
    print(f"bert-base, {config.num_hidden_layers} layers, {args.threads} threads, fp32")
    for shape in args.shapes.split(","):
        batch, sequence = (int(v) for v in shape.split("x"))
        ids = torch.randint(5, config.vocab_size, (batch, sequence))
        with torch.inference_mode():
            eager = _median_ms(lambda ids=ids: model(input_ids=ids), 10)
        ort_ms = torch_ms = flops = 0.0
        for count, m, k, n in layer_products(batch, sequence, config):
            ort_ms += count * _median_ms(_onnxruntime_product(m, k, n, args.threads))
            with torch.inference_mode():
                torch_ms += count * _median_ms(_pytorch_product(m, k, n))
            flops += 2.0 * count * m * k * n
        layers = config.num_hidden_layers
        ort_ms, torch_ms, flops = ort_ms * layers, torch_ms * layers, flops * layers
        print(f"{batch}x{sequence}: {flops / 1e9:.1f} GFLOP of products; "
              f"products alone: onnxruntime {ort_ms:.1f} ms ({flops / ort_ms / 1e6:.0f} GFLOPS), "
              f"PyTorch {torch_ms:.1f} ms; PyTorch eager whole model {eager:.1f} ms; "
              f"fp32 ceiling {eager / ort_ms:.2f}x (1.3x needs {eager / 1.3:.1f} ms)",
              flush=True)


if __name__ == "__main__":
    main()
