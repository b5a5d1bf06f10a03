"""Export in a child process: the exporters' caches pin the last model's weights until exit.

`export_saved_model` runs `python -m extractor.export_child` on a saved Hugging Face model
directory, every job of a run in one child, and reads the settings back as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

from .errors import UnexportableError
from .export import ExportSettings, export_onnx


@dataclass(frozen=True)
class ExportJob:
    """One ONNX file to export from a model (see `export_onnx` for the fields)."""

    path: str
    exporter: str = "dynamo"
    opset: int | None = None
    hidden_states: bool = False
    attn_implementation: str | None = None  # switch the model's attention first (e.g. "eager")


def run_export_jobs(model: PreTrainedModel, jobs: list[ExportJob]) -> list[ExportSettings]:
    """Export `model` once per job, in order."""
    results = []
    for job in jobs:
        if job.attn_implementation:
            model.set_attn_implementation(job.attn_implementation)
        results.append(export_onnx(model, job.path, job.exporter, job.opset, job.hidden_states))
    return results


def export_saved_model(model_dir: str | Path, jobs: list[ExportJob]) -> list[ExportSettings]:
    """Run export jobs on a saved Hugging Face model directory in a fresh Python process.

    The exporters keep module-level caches that pin every weight of the last model
    exported (onnxscript's rewrite rules hold the last graph they matched); a child
    process takes them with it when it exits, so a large model's memory really goes.
    """
    request = {"model_dir": str(model_dir), "jobs": [asdict(job) for job in jobs]}
    done = subprocess.run(
        [sys.executable, "-m", "extractor.export_child", json.dumps(request)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"export subprocess failed:\n{done.stderr[-4000:]}")
    results = json.loads(done.stdout.strip().splitlines()[-1])
    if isinstance(results, dict):
        raise UnexportableError(results["refused"])
    return [ExportSettings(**result) for result in results]


def export_in_child(request: dict[str, Any]) -> None:
    """The child's side: run the jobs and print their settings (or the refusal) as JSON."""
    from .resolve.model import load_saved_model

    model = load_saved_model(request["model_dir"])
    try:
        settings = run_export_jobs(model, [ExportJob(**job) for job in request["jobs"]])
    except UnexportableError as exc:
        print(json.dumps({"refused": str(exc)}))
        return
    print(json.dumps([s.to_dict() for s in settings]))


if __name__ == "__main__":  # `python -m extractor.export_child`: the child of export_saved_model
    export_in_child(json.loads(sys.argv[1]))
