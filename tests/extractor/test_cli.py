from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from extractor.__main__ import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main


@pytest.fixture()
def workdir(tmp_path, fixture_checkpoint):
    """A private copy of the fixture checkpoint and its encoder config directory."""
    shutil.copy(fixture_checkpoint, tmp_path / "oneie.bin")
    shutil.copytree(fixture_checkpoint.parent / "tiny-bert", tmp_path / "tiny-bert")
    return tmp_path


def _listing(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))


def test_fixture_extracts_to_a_loadable_model_and_verified_onnx(workdir, capsys):
    out = workdir / "out"
    assert main([str(workdir / "oneie.bin"), "--prefix", "bert.", "-o", str(out)]) == EXIT_OK
    text = capsys.readouterr().out
    assert ("config: bert (4 attention heads) from "
            "checkpoint['config']['bert_model_name']='tiny-bert'") in text
    assert "ok wrote" in text
    assert _listing(out) == [
        "config.json",
        "model.onnx",
        "model.safetensors",
        "report.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    report = json.loads((out / "report.json").read_text())
    assert report["tool"] == "subgraft" and report["ok"] is True
    assert report["source"]["state_dict_location"] == "checkpoint['model']"
    assert report["config"]["num_attention_heads"] == 4
    assert report["config"]["kind"] == "found" and report["config"]["assumed"] == {}
    assert report["export"]["dummy_batch"] == 3 and report["export"]["dummy_sequence"] == 17
    assert len(report["parity"]["results"]) == 10
    # Tighter than the 1e-4 tolerance on purpose: the export is exact, not merely close.
    # fp32 kernels of any CPU stay near 1e-6 on this tiny model (torch held to AVX2 too).
    worst = max(r["max_abs"] for r in report["parity"]["results"])
    assert worst < 1e-5, f"expected parity within 1e-5 at every shape, saw {worst:.2e}"
    assert report["frozen_shapes"] == []
    # The Hugging Face side is a real model directory with the encoder's weights.
    model = AutoModel.from_pretrained(out)
    source = torch.load(workdir / "oneie.bin", weights_only=True)["model"]
    assert torch.equal(
        model.encoder.layer[1].output.dense.weight,
        source["bert.encoder.layer.1.output.dense.weight"],
    )
    assert AutoTokenizer.from_pretrained(out)("the president said")["input_ids"][0] == 2


def test_without_prefix_the_single_encoder_is_chosen_and_json_is_printed(workdir, capsys):
    out = workdir / "out"
    assert main([str(workdir / "oneie.bin"), "-o", str(out), "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["prefix"] == "bert." and report["ok"] is True
    assert report["output"] == str(out)


def test_list_shows_the_prefix_tree(workdir, capsys):
    assert main([str(workdir / "oneie.bin"), "--list"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "bert.  39 tensors, 87,680 params, float32  <- bert layout encoder" in text
    assert "trigger_crf.  1 tensor, 121 params" in text
    assert not (workdir / "oneie-bert-onnx").exists()


def test_rerun_replaces_our_own_output(workdir):
    out = workdir / "out"
    assert main([str(workdir / "oneie.bin"), "-o", str(out)]) == EXIT_OK
    (out / "stale.txt").write_text("from an earlier run")
    assert main([str(workdir / "oneie.bin"), "-o", str(out)]) == EXIT_OK
    assert not (out / "stale.txt").exists()
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".")] == []


def test_verification_failure_exits_1_and_writes_nothing(workdir, capsys):
    out = workdir / "out"
    before = _listing(workdir)
    code = main([str(workdir / "oneie.bin"), "-o", str(out), "--atol", "0", "--rtol", "0"])
    assert code == EXIT_FAILED
    assert "verification failed" in capsys.readouterr().out
    assert _listing(workdir) == before and not out.exists()
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".")] == []


class RunsCode:
    """Pickled by the unsafe-checkpoint case: unpickling it would call os.system."""

    def __reduce__(self):
        import os

        return (os.system, ("touch pwned-by-checkpoint",))


def _bad_inputs(workdir):
    (workdir / "empty_dir").mkdir()
    (workdir / "text.bin").write_text("not a checkpoint\n")
    good = (workdir / "oneie.bin").read_bytes()
    (workdir / "cut.bin").write_bytes(good[: len(good) // 3])
    torch.save({"model": {"w": torch.zeros(1)}, "obj": RunsCode()}, workdir / "unsafe.bin")
    torch.save({"model": {"mlp.fc.weight": torch.zeros(4, 4)}}, workdir / "mlp.bin")
    (workdir / "other.json").write_text(
        json.dumps(
            {
                "model_type": "bert",
                "vocab_size": 128,
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 37,
            }
        )
    )
    (workdir / "taken").mkdir()
    (workdir / "taken" / "notes.txt").write_text("the user's own files")
    (workdir / "config_only").mkdir()
    shutil.copy(workdir / "tiny-bert" / "config.json", workdir / "config_only" / "config.json")
    ckpt = str(workdir / "oneie.bin")
    return {
        "missing file": ([str(workdir / "nope.bin")], "no such file"),
        "directory without weights": ([str(workdir / "empty_dir")], "directory without weights"),
        "text file": ([str(workdir / "text.bin")], "is a text file, not a PyTorch checkpoint"),
        "truncated": ([str(workdir / "cut.bin")], "corrupt"),
        "unsafe pickle": ([str(workdir / "unsafe.bin")], "its pickle calls posix.system"),
        "unknown prefix": ([ckpt, "--prefix", "bret."], "closest: 'bert.'"),
        "unresolvable architecture": (
            [str(workdir / "mlp.bin"), "--prefix", "mlp."],
            "no encoder transformers knows",
        ),
        "shape mismatch": ([ckpt, "--config", str(workdir / "other.json")], "does not fit"),
        "output not ours": ([ckpt, "-o", str(workdir / "taken")], "not written by subgraft"),
        "output is the input": ([ckpt, "-o", str(workdir / "oneie.bin")], "overwrite the input"),
        "bad flag": ([ckpt, "--opset", "eleven"], "invalid int value"),
        "int8 without a tokenizer": (
            [ckpt, "--config", str(workdir / "config_only" / "config.json"), "--quantize", "int8"],
            "needs the model's tokenizer",
        ),
    }


CASES = [
    "missing file",
    "directory without weights",
    "text file",
    "truncated",
    "unsafe pickle",
    "unknown prefix",
    "unresolvable architecture",
    "shape mismatch",
    "output not ours",
    "output is the input",
    "bad flag",
    "int8 without a tokenizer",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_one_clear_line_exit_2_and_nothing_written(workdir, capsys, case):
    argv, message = _bad_inputs(workdir)[case]
    before = {p: p.stat().st_mtime_ns for p in workdir.rglob("*")}
    assert main(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert message in captured.err
    assert "Traceback" not in captured.err + captured.out
    usage = ["usage: python -m extractor [extract] CHECKPOINT"] if case == "bad flag" else []
    assert [line[: len(u)] for line, u in zip(lines, usage, strict=False)] == usage, captured.err
    assert len(lines) == len(usage) + 1 and lines[-1].startswith("error: "), captured.err
    assert {p: p.stat().st_mtime_ns for p in workdir.rglob("*")} == before


def test_force_replaces_a_directory_that_is_not_ours(workdir):
    (workdir / "taken").mkdir()
    (workdir / "taken" / "notes.txt").write_text("x")
    argv = [str(workdir / "oneie.bin"), "-o", str(workdir / "taken"), "--force"]
    assert main(argv) == EXIT_OK
    assert (workdir / "taken" / "model.onnx").is_file()
    assert not (workdir / "taken" / "notes.txt").exists()


def test_two_encoders_without_prefix_show_the_list_and_exit_2(workdir, capsys):
    state = torch.load(workdir / "oneie.bin", weights_only=True)
    extra = {"extra_" + k: v for k, v in state["model"].items() if k.startswith("bert.")}
    state["model"].update(extra)
    torch.save(state, workdir / "two.bin")
    assert main([str(workdir / "two.bin")]) == EXIT_USAGE
    captured = capsys.readouterr()
    err = captured.err
    assert "bert.  39 tensors" in captured.out and "extra_bert.  39 tensors" in captured.out
    assert err.strip().splitlines() == [
        "error: several encoders found ('bert.', 'extra_bert.'); choose one with --prefix"
    ]
    assert not list(workdir.glob("two-*"))


def test_optimize_and_quantize_write_verified_variants(workdir, capsys):
    out = workdir / "out"
    argv = [str(workdir / "oneie.bin"), "-o", str(out), "--optimize", "--quantize", "int8"]
    assert main(argv) == EXIT_OK
    assert "fused Attention 2, EmbedLayerNormalization 1" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    variants = {v["name"]: v for v in report["variants"]}  # openvino-int8 too with NNCF
    optimized, int8 = variants["optimized"], variants["int8"]
    assert optimized["fused"] == {"Attention": 2, "EmbedLayerNormalization": 1,
                                  "SkipLayerNormalization": 4, "BiasGelu": 2}
    assert optimized["parity"]["ok"] and len(optimized["parity"]["results"]) == 10
    assert int8["accuracy"]["sentence_cosine_mean"] >= 0.995
    assert {"model.optimized.onnx", "model.int8.onnx"} <= set(report["files"])
    assert not list(out.glob("fusable*"))
    # A small model keeps its weights inside each file, int8 included.
    assert not list(out.glob("*.data")) and int8["merged_projections"] == 2
    # ...and `bench` times each of them against PyTorch in one run.
    assert main(["bench", str(out), "--runs", "1", "--shapes", "1x16,2x9", "--json"]) == EXIT_OK
    timings = json.loads(capsys.readouterr().out)
    assert [(t["model"], t["batch"], t["sequence"]) for t in timings] == [
        (model, batch, sequence) for batch, sequence in ((1, 16), (2, 9))
        for model in ("PyTorch eager", "model.onnx", "model.optimized.onnx", "model.int8.onnx")]
    assert all(t["ms"] > 0 for t in timings)
    assert [t["speedup"] for t in timings if t["model"] == "PyTorch eager"] == [1.0, 1.0]
    # Each figure comes with its quartiles, its warnings and what it was measured on.
    for t in timings:
        assert t["ms_p25"] <= t["ms"] <= t["ms_p75"] and t["runs"] >= 5
        assert t["speedup_p25"] <= t["speedup"] <= t["speedup_p75"]
        assert isinstance(t["warnings"], list)
        assert set(t["conditions"]["warnings"]) <= set(t["warnings"])
    conditions = timings[0]["conditions"]
    assert conditions["cpu"] and conditions["threads"] == 2 and conditions["cores"] >= 1
    assert "OMP_WAIT_POLICY=unset" in conditions["thread_wait"]  # both spin a while, alike
    assert "allow_spinning=1" in conditions["thread_wait"]


def test_bench_refuses_a_directory_that_is_not_an_output(workdir, capsys):
    assert main(["bench", str(workdir)]) == EXIT_USAGE
    assert "is not an extractor output" in capsys.readouterr().err


def test_keep_failed_keeps_a_failed_export_beside_the_output(workdir, capsys):
    out = workdir / "out"
    argv = [str(workdir / "oneie.bin"), "-o", str(out), "--atol", "0", "--rtol", "0",
            "--keep-failed"]
    assert main(argv) == EXIT_FAILED
    assert "kept for inspection in" in capsys.readouterr().out
    assert not out.exists()
    kept = workdir / "out.failed"
    report = json.loads((kept / "report.json").read_text())
    assert report["ok"] is False and report["output"] == str(kept)
    assert (kept / "model.onnx").is_file()


def test_help_and_usage_errors_import_neither_torch_nor_transformers():
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from extractor.__main__ import main\n"
        "code = main(['--prefx', 'bert.', 'x.bin'])\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('torch', 'transformers', 'onnx', 'onnxruntime')\n"
        "print(code, [m for m in heavy if m in sys.modules])\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    last = run.stdout.strip().splitlines()[-1]
    assert last == "2 []", f"expected exit 2 and no heavy module loaded, saw {last!r}"
    assert "bench" in run.stdout and "graft-check" in run.stdout, "the help lists the commands"


def test_extract_is_the_default_command_and_may_be_named(workdir):
    named = main(["extract", str(workdir / "oneie.bin"), "-o", str(workdir / "named")])
    assert named == EXIT_OK and (workdir / "named" / "model.onnx").is_file()
    # A checkpoint whose name is a command's is reached through the named command.
    shutil.copy(workdir / "oneie.bin", workdir / "bench")
    args = ["extract", str(workdir / "bench"), "-o", str(workdir / "from_bench")]
    assert main(args) == EXIT_OK


def test_a_usage_error_shows_the_commands_usage_then_one_error_line(capsys):
    assert main(["bench", "some_dir", "--runs", "many"]) == EXIT_USAGE
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "usage: python -m extractor bench DIRECTORY [options]", lines
    assert lines[1].startswith("error: python -m extractor bench: argument --runs"), lines
    assert len(lines) == 2, lines
    assert main([]) == EXIT_USAGE
    assert "give a checkpoint" in capsys.readouterr().err
