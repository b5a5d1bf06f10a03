"""A CLI started the way a user starts it at a terminal, for the tests that press Ctrl+C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path


def start_cli(package: str, args: list[str], cwd: Path) -> subprocess.Popen:
    """`python -m package *args` with its output piped, unbuffered, 200 columns wide, and
    SIGINT at its default, whatever the suite inherited: a suite started in the
    background (`cmd &` in a script) inherits SIGINT ignored, Python then never raises
    KeyboardInterrupt, and a Ctrl+C test waits for an exit that cannot come."""
    return subprocess.Popen(
        [sys.executable, "-m", package, *args], cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_sigint_default)


def output_until_serving(process: subprocess.Popen) -> tuple[str, str]:
    """What a `--netron` CLI printed up to its "Serving until Ctrl+C" line, and the URL
    it serves Netron at."""
    text = ""
    while "Serving until Ctrl+C" not in text:
        line = process.stdout.readline()
        assert line, f"exited early: {process.stderr.read()}"
        text += line
    return text, re.search(r"Netron: (http://127\.0\.0\.1:\d+)", text)[1]


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
