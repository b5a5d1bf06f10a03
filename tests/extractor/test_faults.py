"""Nothing lost under faults: a run killed at any moment, and a full disk."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]


def _command(workdir: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "extractor", str(workdir / "oneie.bin"), "-o", str(out)]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def _complete(out: Path) -> dict:
    """The output directory is whole: its report, and every file it lists, loads."""
    report = json.loads((out / "report.json").read_text())
    assert report["tool"] == "subgraft" and report["ok"] is True
    assert sorted(p.name for p in out.iterdir()) == sorted(report["files"])
    onnx.checker.check_model(onnx.load(str(out / "model.onnx")))
    assert load_file(str(out / "model.safetensors"))
    json.loads((out / "config.json").read_text())
    return report


@pytest.fixture()
def workdir(tmp_path, fixture_checkpoint):
    shutil.copy(fixture_checkpoint, tmp_path / "oneie.bin")
    shutil.copytree(fixture_checkpoint.parent / "tiny-bert", tmp_path / "tiny-bert")
    return tmp_path


def test_a_run_killed_at_any_of_12_moments_leaves_the_old_output_or_the_new(workdir):
    out = workdir / "out"
    start = time.perf_counter()
    subprocess.run(_command(workdir, out), env=_env(), check=True, capture_output=True)
    duration = time.perf_counter() - start
    _complete(out)
    killed = finished = 0
    # The first quarter of a run is imports, where nothing is written: the moments are
    # spread over the rest (staging, export, verification, the swap), 12 runs not 20.
    for point in range(12):
        process = subprocess.Popen(_command(workdir, out), env=_env(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(duration * (0.25 + 0.75 * (point + 0.5) / 12))
        if process.poll() is None:
            killed += 1
            process.send_signal(signal.SIGKILL)
        else:  # the machine got quicker than the first run: aim the next moments earlier
            finished += 1
            duration *= 0.8
        process.wait()
        _complete(out)  # the old output or the new, never missing, never half-written
    assert killed >= 6, (  # a run killed mid-way is what this test is for
        f"expected at least 6 of 12 runs to be killed while running, saw {killed} "
        f"({finished} had finished)")
    # The next run finishes, and clears what the killed runs could not.
    subprocess.run(_command(workdir, out), env=_env(), check=True, capture_output=True)
    _complete(out)
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".")] == []


def _limit_file_size(size: int):
    def limit() -> None:  # in the child: writes past `size` fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


def test_a_full_disk_gives_one_line_exit_2_and_removes_the_staging_directory(workdir):
    out = workdir / "out"
    done = subprocess.run(_command(workdir, out), env=_env(), capture_output=True, text=True,
                          preexec_fn=_limit_file_size(100_000))
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"error: no space left writing {out}")
    assert "File too large" in lines[0]
    assert not out.exists()
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".")] == []


def test_a_full_tmpfs_gives_the_same(tmp_path, fixture_checkpoint):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the size-limit test covers it")
    try:
        shutil.copy(fixture_checkpoint.parent / "tiny-bert" / "config.json", tmp_path / "c.json")
        out = mount / "out"
        command = [sys.executable, "-m", "extractor", str(fixture_checkpoint), "-o", str(out)]
        done = subprocess.run(command, env=_env(), capture_output=True, text=True)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2, done.stderr[-2000:]
        assert len(lines) == 1 and "No space left on device" in lines[0]
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_honour_the_umask(workdir, mask):
    out = workdir / "out"
    done = subprocess.run(["sh", "-c", f"umask {mask:03o} && exec \"$@\"", "sh",
                           *_command(workdir, out)], env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    modes = {str(p.relative_to(workdir)): p.stat().st_mode & 0o777
             for p in (out, *out.rglob("*"))}
    want = {p: (0o777 if (workdir / p).is_dir() else 0o666) & ~mask for p in modes}
    assert modes == want, {p: (oct(m), oct(want[p])) for p, m in modes.items() if m != want[p]}
