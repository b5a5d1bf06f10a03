from __future__ import annotations

import io

import torch
from rich.console import Console

from extractor.parity import ParityReport, ParityResult
from extractor.report import render_keys, render_parity, render_prefixes
from extractor.resolve.model import KeyReport
from extractor.resolve.prefixes import prefix_summary


def _console() -> Console:
    return Console(file=io.StringIO(), width=100)


def test_key_table_lists_every_problem_and_tolerated_key():
    keys = KeyReport(
        missing=["pooler.dense.bias"],
        unexpected=["crf.transition"],
        shape_mismatches=[("encoder.layer.0.output.dense.weight", (8, 4), (4, 4))],
        tolerated=[("embeddings.position_ids", "saved by 4.x")],
    )
    console = _console()
    render_keys(console, keys)
    text = console.file.getvalue()
    for expected in (
        "missing",
        "pooler.dense.bias",
        "unexpected",
        "crf.transition",
        "shape",
        "checkpoint [8, 4] vs model [4, 4]",
        "tolerated",
        "embeddings.position_ids",
    ):
        assert expected in text


def test_parity_table_names_the_failing_shape_and_output():
    parity = ParityReport(
        1e-4,
        1e-4,
        [
            ParityResult("batch 1", 1, 9, "last_hidden_state", 2e-6, 1e-5, True),
            ParityResult(
                "long",
                2,
                160,
                "last_hidden_state",
                float("nan"),
                float("nan"),
                False,
                "Reshape node /encoder/layer.0/attention/self/Reshape failed",
            ),
        ],
    )
    console = _console()
    render_parity(console, parity)
    text = console.file.getvalue()
    assert "1x9" in text and "2.00e-06" in text
    assert "2x160" in text and "ERROR" in text
    assert "long 2x160: Reshape node /encoder/layer.0/attention/self/Reshape failed" in text


def test_prefix_tree_nests_children_under_their_parent():
    from builders.tiny_encoders import tiny_config

    from extractor.resolve.encoders import meta_state_dict

    encoder = meta_state_dict(tiny_config("bert", num_hidden_layers=1))
    state = {**{"bert." + k: v for k, v in encoder.items()}, "crf.transition": torch.zeros(3, 3)}
    console = _console()
    render_prefixes(console, prefix_summary(state), "checkpoint['model']")
    lines = console.file.getvalue().splitlines()
    assert lines[0] == "state dict at checkpoint['model']"
    assert "bert.  23 tensors, 19,333 params, float32  <- bert layout encoder" in lines[1]
    assert "<- bert layout encoder (bert, roberta, +4)" in lines[1]
    assert lines[2].startswith("│   ├── bert.embeddings.")
    assert "crf.  1 tensor, 9 params" in lines[-1]
