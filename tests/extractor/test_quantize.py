from __future__ import annotations

import numpy as np

from extractor.tiers.quantize import _uint8_error


def test_uint8_error_grows_with_outliers():
    rng = np.random.default_rng(0)
    plain = rng.normal(size=10_000)
    spiky = plain.copy()
    spiky[:5] = 200.0  # a few GELU-like outliers stretch the per-tensor scale
    assert _uint8_error(plain) < 0.01
    assert _uint8_error(spiky) > 5 * _uint8_error(plain)


def test_uint8_error_is_zero_for_values_on_the_grid():
    assert _uint8_error(np.array([0.0, 1.0, 2.0, 255.0])) == 0.0
