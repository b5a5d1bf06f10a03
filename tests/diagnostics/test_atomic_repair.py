"""repair's output is one unit: model and external data switch together, or not at all.

A run killed between writing the weights and renaming the model leaves the old
model reading its own weights; the next run removes what the killed one left;
a repair that is not proved leaves no folder it created; a folder that cannot be
written is one line and exit 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from builders import broken_models
from onnx import numpy_helper

from diagnostics import repair
from diagnostics.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
# Dies the moment repair renames its model into place (after its weights are in).
KILLED_AT_COMMIT = """
import os, signal, sys
from diagnostics import atomic, repair
real = atomic.commit_file
def killed(staged, final):
    if final.suffix == ".onnx":
        os.kill(os.getpid(), signal.SIGKILL)
    real(staged, final)
atomic.commit_file = killed
repair(sys.argv[1], sys.argv[2])
"""


def _external(model: onnx.ModelProto, path: Path, scale: float = 1.0) -> Path:
    """`model` saved with external data, its largest float weight scaled by `scale`."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    largest = max(weights, key=lambda t: int(np.prod(t.dims)))
    largest.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(largest) * scale,
                                             largest.name))
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data",
                    size_threshold=0)
    return path


def _run(path: Path) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = broken_models.dummy_inputs(3, 11)
    feed = dict(zip(broken_models.TEXT_INPUTS, (t.numpy() for t in inputs), strict=True))
    return session.run(None, feed)[0]


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _data_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".data"))


def test_a_repair_killed_before_its_model_is_renamed_leaves_the_old_model_whole(tiny, tmp_path):
    broken = onnx.load(str(tiny("position-ids-int")))
    first = _external(broken, tmp_path / "a" / "model.onnx")
    second = _external(broken, tmp_path / "b" / "model.onnx", scale=1.5)
    out = tmp_path / "out" / "fixed.onnx"
    assert repair(first, out).ok
    old = _run(out)
    assert _data_files(out.parent) and all(n.startswith("fixed.onnx.") for n in
                                           _data_files(out.parent))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_COMMIT, str(second), str(out)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, f"expected a SIGKILL at the commit, got {killed.returncode}: " \
        f"{killed.stderr[-1500:]}"
    assert len(_data_files(out.parent)) == 2, "the new weights went in under their own name"
    assert any(n.endswith(".staged") for n in _hidden(out.parent)), _hidden(out.parent)
    after_kill = _run(out)
    assert np.array_equal(after_kill, old), (
        "the old model must read its own weights after a killed repair; its output moved by "
        f"{float(np.abs(after_kill - old).max())}")

    report = repair(second, out)  # the next run finishes and clears what the killed one left
    assert report.ok
    assert _hidden(out.parent) == [], "staged files of the killed run were left behind"
    assert len(_data_files(out.parent)) == 1, _data_files(out.parent)
    assert float(np.abs(_run(out) - old).max()) > 1e-3, "the new weights are in use"


def test_a_repair_that_is_not_proved_leaves_no_folder_it_created(tiny, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "fixed.onnx"
    assert main(["repair", str(tiny("dynamo-ints")), "-o", str(out)]) == 1
    assert not (tmp_path / "new").exists(), list((tmp_path / "new").rglob("*"))


def test_an_output_that_cannot_be_created_is_one_line_and_exit_2(tiny, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["repair", str(tiny("position-ids-int")), "-o",
                 str(blocker / "fixed.onnx")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot create"), lines


def test_a_read_only_folder_is_one_line_and_exit_2(tiny, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        done = subprocess.run([sys.executable, "-m", "diagnostics", "repair",
                               str(tiny("position-ids-int")), "-o", str(folder / "fixed.onnx")],
                              env=env, capture_output=True, text=True, timeout=300)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1, done.stderr[-1500:]
        assert "Read-only file system" in lines[0], lines[0]
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_full_disk_is_one_line_and_exit_2_with_nothing_left(tiny, tmp_path):
    import resource
    import signal

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    source = _external(onnx.load(str(tiny("position-ids-int"))), tmp_path / "src" / "model.onnx")
    out = tmp_path / "out" / "fixed.onnx"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "diagnostics", "repair", str(source), "-o",
                           str(out)], env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=limit)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-1500:]
    assert "File too large" in lines[0], lines[0]
    assert not out.parent.exists(), list(out.parent.iterdir())
