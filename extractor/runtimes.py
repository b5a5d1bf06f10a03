"""The runtimes an exported file can run in: onnxruntime always, OpenVINO when installed.

onnxruntime is the default for every file. OpenVINO is an optional extra
(`pip install "subgraft[openvino]"`, with NNCF for its int8), chosen over
onnxruntime's OpenVINO execution provider because it is one wheel that loads
our ONNX files as they are and compiles them itself. It runs an fp32 graph
with bf16 arithmetic where the CPU has bf16 instructions (AVX512-BF16 or AMX)
and otherwise emulates it, slower than fp32, so bf16 is refused on CPUs
without them; NNCF quantizes statically, calibrated on real text. Each runner
takes numpy feeds and returns `last_hidden_state`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ExtractorError

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


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
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ExtractorError(f"{path}: onnxruntime cannot load it ({reason})") from None


def onnxruntime_runner(path: str | Path, threads: int | None = None) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = checked_session(path, options)
    wanted = {i.name for i in session.get_inputs()}

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(["last_hidden_state"], {k: v for k, v in feeds.items()
                                                   if k in wanted})[0]
    return run


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
