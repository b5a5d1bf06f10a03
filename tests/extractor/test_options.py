from __future__ import annotations

import dataclasses

import pytest

from extractor import ExtractOptions, extract
from extractor.errors import ExtractorError


@pytest.mark.parametrize("values, message", [
    ({"quantize": "int4"}, "unknown quantization 'int4'"),
    ({"precision": "fp8"}, "unknown precision 'fp8'"),
    ({"runtime": "tensorrt"}, "unknown runtime 'tensorrt'"),
    ({"max_memory": "lots"}, "max_memory: "),
    ({"max_memory": 0}, "max_memory is 0"),
    ({"tokenizer": ""}, "--tokenizer is empty"),
])
def test_a_bad_option_is_refused_when_the_options_are_made(values, message):
    with pytest.raises(ExtractorError, match=message):
        ExtractOptions(**values)


def test_a_bad_option_is_refused_before_the_checkpoint_is_read(tmp_path):
    with pytest.raises(ExtractorError, match="unknown quantization"):
        extract(tmp_path / "not-there.bin", "bert.", tmp_path / "out", quantize="int4")
    assert not (tmp_path / "out").exists()


def test_options_are_frozen_and_their_checked_values_kept(tmp_path):
    options = ExtractOptions(prefix="bert.", max_memory="1G", optimize=True)
    assert options.budget == 1 << 30 and options.fusable and not options.real_text
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.quantize = "int4"


def test_extract_takes_options_or_their_fields_not_both(tmp_path):
    with pytest.raises(TypeError, match="not both"):
        extract(tmp_path / "model.bin", "bert.", options=ExtractOptions())


def test_options_with_set_values_hash_and_their_values_cannot_change_after_the_checks():
    given = {"num_attention_heads": 4}
    options = ExtractOptions(prefix="bert.", overrides=given)
    given["num_attention_heads"] = 3  # the caller's dict changes; the options do not
    assert options.overrides == {"num_attention_heads": 4}
    same = ExtractOptions(prefix="bert.", overrides={"num_attention_heads": 4})
    assert options == same and hash(options) == hash(same)
    with pytest.raises(TypeError):
        options.overrides["num_attention_heads"] = 2
