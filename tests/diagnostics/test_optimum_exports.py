"""No false alarm on Hugging Face Optimum's exports (checked-in, made by
fixtures/make_optimum_fixture.sh: Optimum cannot be installed beside transformers 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics import check

OPTIMUM = Path(__file__).resolve().parents[2] / "fixtures" / "optimum"


@pytest.mark.parametrize("name", ["tiny_bert_optimum.onnx", "tiny_bert_optimum_o3.onnx"])
def test_optimum_exports_have_no_findings_and_run_at_every_shape(name):
    # Optimum's dummy is batch 2, sequence 16; its graphs record neither.
    report = check(OPTIMUM / name, probe=True, probe_shapes=[(2, 16), (1, 34), (3, 11), (2, 128)],
                   dummy={"batch": 2, "sequence": 16})
    assert report.findings == ()
    assert report.probe is not None and report.probe.failures == 0
    assert [(r.batch, r.sequence, r.ok) for r in report.probe.runs] == [
        (2, 16, True), (1, 34, True), (3, 11, True), (2, 128, True)]
    assert report.ok
