"""The runtimes an exported file can run in: onnxruntime always, OpenVINO when installed.

onnxruntime is the default for every file. OpenVINO is an optional extra
(`pip install "subgraft[openvino]"`, with NNCF for its int8), chosen over
onnxruntime's OpenVINO execution provider because it is one wheel that loads
our ONNX files as they are and compiles them itself. It runs an fp32 graph
with bf16 arithmetic where the CPU has bf16 instructions (AVX512-BF16 or AMX)
and otherwise emulates it, slower than fp32, so bf16 is refused on CPUs
without them; NNCF quantizes statically, calibrated on real text. Each runner
takes numpy feeds and returns `last_hidden_state`.

How idle threads wait is set here too. onnxruntime's workers spin after each
run unless a session says otherwise; OpenMP (PyTorch's, CTranslate2's) reads
OMP_WAIT_POLICY once, when it is loaded, and nothing changes it afterwards, so
a process that already loaded it with another policy runs the work in a fresh
interpreter (`with_thread_wait`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from diagnostics.errors import first_line

from ..errors import ExtractorError

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
SPINNING_ENTRY = "session.intra_op.allow_spinning"
OPENMP_RUNTIMES = {"libgomp": "GNU OpenMP", "libiomp": "Intel OpenMP", "libomp": "LLVM OpenMP"}
T = TypeVar("T")


class RuntimeUnavailable(ExtractorError):
    """The runtime or precision asked for is not available on this machine."""


def openvino_version() -> str | None:
    try:
        import openvino
    except ImportError:
        return None
    return openvino.__version__ if hasattr(openvino, "__version__") else openvino.get_version()


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def openvino_problem() -> str | None:
    if openvino_version() is None:
        return 'OpenVINO is not installed: pip install "subgraft[openvino]"'
    return None


def nncf_problem() -> str | None:
    """Why OpenVINO's static int8 cannot be made here, or None."""
    if problem := openvino_problem():
        return problem
    try:
        import nncf  # noqa: F401
    except ImportError:
        return 'NNCF is not installed: pip install "subgraft[openvino]"'
    return None


def bf16_problem() -> str | None:
    """Why bf16 cannot run fast here, or None."""
    if openvino_version() is None:
        return ("the bf16 tier runs in OpenVINO, which is not installed: "
                'pip install "subgraft[openvino]"')
    if not cpu_flags() & set(BF16_FLAGS):
        return ("this CPU has no bf16 instructions (avx512_bf16 or AMX); bf16 would be "
                "emulated, slower than fp32: use the exact or int8 tier")
    return None


def checked_session(path: str | Path, options: Any = None,
                    providers: list[str] | None = None) -> Any:
    """An onnxruntime session for a file a user handed us, checked first as `diagnostics`
    checks any model (recognised by its bytes, its external data inside its folder).

    Raises:
        ExtractorError: the file is not a model we can run, in one line.
    """
    import onnxruntime as ort

    from diagnostics.errors import DiagnosticsError
    from diagnostics.loading import load_model

    try:
        load_model(path)
        return ort.InferenceSession(str(path), options,
                                    providers=providers or ["CPUExecutionProvider"])
    except DiagnosticsError as exc:
        raise ExtractorError(str(exc)) from None
    except Exception as exc:  # onnxruntime's own refusal: the file's fault, said in one line
        reason = first_line(exc)
        raise ExtractorError(f"{path}: onnxruntime cannot load it ({reason})") from None


def session_options(threads: int | None = None, spinning: bool | None = None) -> Any:
    """onnxruntime's options: `threads` intra-op threads (inter-op 1); `spinning` False
    puts its workers to sleep as soon as they run out of work (None: its default, spin)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if spinning is not None:
        options.add_session_config_entry(SPINNING_ENTRY, str(int(spinning)))
    return options


def onnxruntime_runner(path: str | Path, threads: int | None = None,
                       spinning: bool | None = None) -> Runner:
    session = checked_session(path, session_options(threads, spinning))
    wanted = {i.name for i in session.get_inputs()}

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(["last_hidden_state"], {k: v for k, v in feeds.items()
                                                   if k in wanted})[0]
    return run


def openmp_runtime() -> str | None:
    """The OpenMP runtime this process has loaded, e.g. "GNU OpenMP (libgomp.so.1)", or None
    (none yet, or no /proc/self/maps to read: then torch imported counts as loaded)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "OpenMP (not identified)" if "torch" in sys.modules else None
    for line in maps.splitlines():
        library = line.rsplit("/", 1)[-1]
        for stem, name in OPENMP_RUNTIMES.items():
            if library.startswith((stem + ".", stem + "-")):  # libgomp-a34b3233.so.1 in wheels
                return f"{name} ({library})"
    return None


def openmp_wait_policy(spinning: bool) -> str | None:
    """The OMP_WAIT_POLICY that matches onnxruntime's `spinning`: PASSIVE when it does not
    spin; unset (OpenMP's default: spin a while, then sleep) when it does."""
    return None if spinning else "PASSIVE"


def with_thread_wait(spinning: bool, work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` with OpenMP's threads waiting as `spinning` says (OMP_WAIT_POLICY).

    OpenMP reads the policy when it is loaded: before that it is set here, and `work`
    runs in this process; after, with another policy, `work` (a module-level function,
    picklable arguments and result) runs in a fresh interpreter started with it, and
    its exception, if it raises one, is raised here.
    """
    wanted = openmp_wait_policy(spinning)
    if openmp_runtime() is None:
        _set_wait_policy(os.environ, wanted)
    if (os.environ.get("OMP_WAIT_POLICY") or "").upper() == (wanted or ""):
        return work(*args)
    import pickle
    import subprocess
    import tempfile

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    _set_wait_policy(env, wanted)
    with tempfile.TemporaryDirectory(prefix="subgraft-wait-") as scratch:
        job = Path(scratch) / "job.pickle"
        job.write_bytes(pickle.dumps((work, args)))
        done = subprocess.run(
            [sys.executable, "-c", "from extractor.tiers.runtimes import run_job; run_job()",
             str(job)],
            env=env, capture_output=True, text=True)
        outcome = pickle.loads(job.read_bytes()) if done.returncode == 0 else None
    if not outcome or outcome[0] not in ("returned", "raised"):
        raise RuntimeError(f"the process started to run {work.__name__} with "
                           f"OMP_WAIT_POLICY={wanted or 'unset'} failed (exit "
                           f"{done.returncode}):\n{done.stderr[-3000:]}")
    if outcome[0] == "raised":
        raise outcome[1]
    return outcome[1]


def run_job() -> None:
    """In the interpreter `with_thread_wait` started: run the pickled job, pickle its outcome
    over it (a bug's traceback goes to stderr, which the parent shows)."""
    import pickle

    job = Path(sys.argv[1])
    work, args = pickle.loads(job.read_bytes())
    try:
        outcome: tuple[str, Any] = ("returned", work(*args))
    except ExtractorError as exc:
        outcome = ("raised", exc)
    job.write_bytes(pickle.dumps(outcome))


def _set_wait_policy(env: Any, value: str | None) -> None:
    if value is None:
        env.pop("OMP_WAIT_POLICY", None)
    else:
        env["OMP_WAIT_POLICY"] = value


def openvino_runner(path: str | Path, precision: str = "f32",
                    threads: int | None = None) -> Runner:
    """An ONNX file or OpenVINO IR compiled for the CPU with `precision` ("f32", "bf16")."""
    if problem := openvino_problem():
        raise RuntimeUnavailable(problem)
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    request = compiled.create_infer_request()
    wanted = {name for port in compiled.inputs for name in port.get_names()}
    output = compiled.output("last_hidden_state")

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        result = request.infer({k: v for k, v in feeds.items() if k in wanted})
        return np.asarray(result[output])
    return run


def save_openvino_ir(onnx_path: str | Path, target: str | Path) -> Path:
    """The ONNX file as OpenVINO IR (`model.xml` + `model.bin`, fp32 weights)."""
    import openvino as ov

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.Core().read_model(str(onnx_path)), str(target), compress_to_fp16=False)
    return target


def calibration_samples(inputs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """One sample per sentence of a padded batch, each cut to its own real tokens."""
    lengths = inputs["attention_mask"].sum(1)
    return [{name: value[row : row + 1, :length] for name, value in inputs.items()}
            for row, length in enumerate(lengths)]


def quantize_openvino_int8(onnx_path: str | Path, target: str | Path,
                           samples: list[dict[str, np.ndarray]]) -> Path:
    """NNCF's static int8 (transformer preset), its ranges calibrated on `samples`."""
    import contextlib
    import io
    import logging

    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    model = ov.Core().read_model(str(onnx_path))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples),
                                  model_type=nncf.ModelType.TRANSFORMER)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(target), compress_to_fp16=False)
    return target
