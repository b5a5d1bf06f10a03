"""RepairOptions: every choice of one repair, checked once, before the model is read."""

from __future__ import annotations

import dataclasses

import pytest

from diagnostics import repair
from diagnostics.__main__ import EXIT_USAGE, main
from diagnostics.errors import OutputPathError, ShapeSpecError
from diagnostics.repair.options import RepairOptions

BAD = [
    ({"output": ""}, OutputPathError, "the output path is empty"),
    ({"output": 3}, OutputPathError, "is not a path"),
    ({"dummy": {"batch": 0}}, ShapeSpecError, "'batch': 0 is no size"),
    ({"dummy": {"batch": True}}, ShapeSpecError, "is no size"),
    ({"dummy": [("batch", 2)]}, ShapeSpecError, "dummy is a list"),
    ({"shapes": [(1, 0)]}, ShapeSpecError, "is not a (batch, sequence) pair"),
    ({"shapes": [(1, 2, 3)]}, ShapeSpecError, "is not a (batch, sequence) pair"),
    ({"shapes": [(1, 1 << 30)]}, ShapeSpecError, "out of range"),
    ({"shapes": "1x8"}, ShapeSpecError, "shapes is a str"),
    ({"expect": {"x": "batch"}}, ShapeSpecError, "is not a list of dims"),
    ({"expect": {"x": ("batch", -1)}}, ShapeSpecError, "is not a list of dims"),
    ({"inputs": "batch.npz"}, ShapeSpecError, "inputs is a str"),
    ({"inputs": [3]}, ShapeSpecError, "a int is neither a .npz path nor a dict"),
    ({"max_memory": "lots"}, ShapeSpecError, "--max-memory"),
]


@pytest.mark.parametrize(("fields", "error", "text"), BAD)
def test_a_bad_option_is_one_line_before_the_model_is_read(tmp_path, fields, error, text):
    missing = tmp_path / "no-such-model.onnx"  # read first, it would be a ModelFileError
    with pytest.raises(error) as raised:
        repair(missing, **fields)
    message = str(raised.value)
    assert text in message and "\n" not in message, message
    with pytest.raises(error):
        RepairOptions(**fields)


def test_options_are_checked_and_kept_in_plain_types():
    options = RepairOptions(output="out.onnx", dummy={"batch": 2}, shapes=[[1, 300]],
                            expect={"x": ["batch", 3]}, inputs=["a.npz"], max_memory="1G")
    assert options.shapes == ((1, 300),) and options.expect == {"x": ("batch", 3)}
    assert options.inputs == ("a.npz",) and options.budget == 1 << 30
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.dry_run = True  # type: ignore[misc]


def test_repair_takes_options_or_their_fields_not_both(tiny):
    path = tiny("attention-ints")
    by_fields = repair(path, dry_run=True, dummy={"batch": 2, "sequence": 8})
    by_options = repair(path, options=RepairOptions(dry_run=True,
                                                    dummy={"batch": 2, "sequence": 8}))
    assert by_fields.changes == by_options.changes and len(by_fields.changes) == 8
    with pytest.raises(TypeError, match="not both"):
        repair(path, "out.onnx", options=RepairOptions(dry_run=True))
    with pytest.raises(TypeError):
        repair(path, dry_runn=True)  # a misspelt option is a bug, not a silent default


def test_a_bad_shape_on_the_command_line_exits_2_with_one_line(tiny, tmp_path, capsys):
    args = ["repair", str(tiny("attention-ints")), "-o", str(tmp_path / "f.onnx"),
            "--shapes", "batch=1,sequence=3"]
    assert main(args) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "is not a (batch, sequence) pair" in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []
