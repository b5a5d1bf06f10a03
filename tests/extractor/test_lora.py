"""LoRA (PEFT) encoders: merged as PEFT merges them, or refused in one line.

The truth is PEFT's own `merge_and_unload()` of the same adapter; every export must
match it within 1e-4 (tests/builders/peft_like.py builds the files with PEFT itself).
"""

from __future__ import annotations

import json

import pytest
import torch
from builders.layouts import assert_matches, hf_snapshot
from builders.peft_like import (
    adapter_config,
    adapter_folder,
    base_folder,
    composite,
    merged,
    peft_bert,
    tiny_bert,
)

from extractor.__main__ import EXIT_OK, EXIT_USAGE, main
from extractor.errors import CheckpointError

pytest.importorskip("peft")


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _refused(capsys, *argv) -> str:
    code, out, err = _run(capsys, *argv)
    assert code == EXIT_USAGE and "Traceback" not in out + err, out + err
    [line] = err.strip().splitlines()
    return line


def _differs_from_base(truth, seed: int = 0) -> None:
    """The adapter changes the numbers (else a test of the merge proves nothing)."""
    ids = torch.tensor([[2, 7, 11, 40, 3]])
    with torch.no_grad():
        gap = (truth(ids).last_hidden_state - tiny_bert(seed)(ids).last_hidden_state).abs()
    assert gap.max() > 1e-2


@pytest.mark.parametrize("lora", [
    {},
    {"use_rslora": True, "alpha_pattern": {"value": 32}},
], ids=["plain", "rslora-alpha-pattern"])
def test_unmerged_lora_in_a_composite_checkpoint_matches_peft_merge(tmp_path, capsys, lora):
    peft_model = peft_bert(**lora)
    truth = merged(peft_model)
    _differs_from_base(truth)
    path = composite(tmp_path / "run", peft_model)
    out = tmp_path / "out"
    code, text, err = _run(capsys, path, "-o", out)
    assert code == EXIT_OK, text + err
    assert "LoRA merged into 12 modules" in text
    report = json.loads((out / "report.json").read_text())
    assert report["prefix"] == "encoder."
    assert report["config"]["num_attention_heads"] == 3
    assert assert_matches(out / "model.onnx", truth) < 1e-4


def test_unmerged_lora_with_the_user_prefix(tmp_path, capsys):
    peft_model = peft_bert(seed=3)
    path = composite(tmp_path / "run", peft_model, prefix="model.bert.")
    out = tmp_path / "out"
    code, text, err = _run(capsys, path, "--prefix", "model.bert.", "-o", out)
    assert code == EXIT_OK, text + err
    assert_matches(out / "model.onnx", merged(peft_model))


def test_unmerged_lora_without_adapter_config_is_refused(tmp_path, capsys):
    path = composite(tmp_path / "run", peft_bert(), with_adapter_config=False)
    line = _refused(capsys, path, "-o", tmp_path / "out")
    assert line.startswith("error: LoRA weights found")
    assert "no adapter_config.json" in line and "lora_alpha" in line
    assert not (tmp_path / "out").exists()


def test_dora_and_other_peft_methods_are_refused(tmp_path, capsys):
    peft_model = peft_bert(use_dora=True)
    path = composite(tmp_path / "run", peft_model)
    line = _refused(capsys, path, "-o", tmp_path / "out")
    assert "DoRA" in line and "merge_and_unload" in line
    config = adapter_config(peft_bert())
    config["peft_type"] = "IA3"
    path = composite(tmp_path / "run2", peft_bert())
    (path.parent / "adapter_config.json").write_text(json.dumps(config))
    line = _refused(capsys, path, "-o", tmp_path / "out")
    assert "IA3 adapter, not LoRA" in line


def test_several_adapters_are_refused(tmp_path, capsys):
    peft_model = peft_bert()
    from peft import LoraConfig

    peft_model.add_adapter("other", LoraConfig(r=2, lora_alpha=4, target_modules=["query"]))
    path = composite(tmp_path / "run", peft_model)
    line = _refused(capsys, path, "-o", tmp_path / "out")
    assert "several LoRA adapters (default, other)" in line


def test_adapter_folder_or_trainer_checkpoint_over_a_local_base_matches_peft_merge(tmp_path,
                                                                                  capsys):
    peft_model = peft_bert(seed=5)
    truth = merged(peft_model)
    base_folder(tmp_path / "tiny-bert-base", peft_model)
    folder = adapter_folder(tmp_path / "adapter", peft_model, "../tiny-bert-base")
    for other in ("optimizer.pt", "training_args.bin", "rng_state.pth"):  # a Trainer's
        torch.save({"state": {}}, folder / other)
    out = tmp_path / "out"
    code, text, err = _run(capsys, folder, "-o", out)
    assert code == EXIT_OK, text + err
    report = json.loads((out / "report.json").read_text())
    assert report["source"]["format"].startswith("peft-adapter+directory:")
    assert report["config"]["num_attention_heads"] == 3
    assert assert_matches(out / "model.onnx", truth) < 1e-4


def test_adapter_folder_over_a_base_in_the_local_hf_cache(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    peft_model = peft_bert(seed=6)
    base_folder(hf_snapshot(tmp_path / "hub", "someone/tiny-bert"), peft_model)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    folder = adapter_folder(tmp_path / "adapter", peft_model, "someone/tiny-bert")
    out = tmp_path / "out"
    code, text, err = _run(capsys, folder, "-o", out)
    assert code == EXIT_OK, text + err
    assert_matches(out / "model.onnx", merged(peft_model))


def test_adapter_folder_without_its_base_is_refused_naming_it(tmp_path, capsys):
    folder = adapter_folder(tmp_path / "adapter", peft_bert(), "someone/not-here")
    line = _refused(capsys, folder, "-o", tmp_path / "out")
    assert "LoRA adapter found; base model 'someone/not-here' needed" in line
    assert "no transformer encoder found" not in line
    folder = adapter_folder(tmp_path / "adapter2", peft_bert(), None)
    line = _refused(capsys, folder, "-o", tmp_path / "out")
    assert "LoRA adapter found; its base model is needed" in line
    assert not (tmp_path / "out").exists()


def test_fan_in_fan_out_and_modules_to_save_merge_as_peft_does(tmp_path):
    """GPT-2-style Conv1D weights are stored (in, out): the update is transposed. PEFT's
    merge of the same model is the truth, tensor by tensor."""
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    from extractor.resolve.checkpoint import Checkpoint
    from extractor.resolve.lora import merge_lora

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c_attn = Conv1D(12, 8)
            self.head = torch.nn.Linear(12, 3)

    torch.manual_seed(0)
    peft_model = get_peft_model(Tiny(), LoraConfig(
        r=2, lora_alpha=5, target_modules=["c_attn"], fan_in_fan_out=True,
        modules_to_save=["head"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name or "modules_to_save" in name:  # trained: not PEFT's init
                p.add_(torch.randn_like(p) * 0.3)
    (tmp_path / "adapter_config.json").write_text(json.dumps(adapter_config(peft_model)))
    ckpt = Checkpoint(tmp_path / "model.pt", "torch-zip", dict(peft_model.state_dict()),
                      "top level")
    ours = merge_lora(ckpt).state_dict
    truth = merged(peft_model).state_dict()
    assert sorted(ours) == sorted(truth)
    for key, tensor in truth.items():
        torch.testing.assert_close(ours[key], tensor, rtol=0, atol=1e-6)


def test_loralib_layers_with_alpha_in_hyper_parameters_merge_as_peft_does(tmp_path, capsys):
    """loralib's `lora.Linear` keeps weight, lora_A and lora_B side by side (no base_layer,
    no adapter name); its lora_alpha and r are in the training arguments."""
    peft_model = peft_bert(seed=8, target_modules=["query", "value", "dense"])
    truth = merged(peft_model)
    state = {}
    for key, tensor in peft_model.state_dict().items():
        key = key.removeprefix("base_model.model.").replace(".base_layer.", ".")
        state["encoder." + key.replace(".default.weight", "").replace(".default", "")] = tensor
    assert "encoder.encoder.layer.0.attention.self.query.lora_A" in state
    (tmp_path / "config.json").write_text(json.dumps(truth.config.to_dict()))
    path = tmp_path / "model.pt"
    torch.save({"model": state, "args": {"lora_alpha": 8, "r": 4, "lr": 1e-4}}, path)
    out = tmp_path / "out"
    code, text, err = _run(capsys, path, "-o", out)
    assert code == EXIT_OK, text + err
    assert "from checkpoint['args']" in text
    assert assert_matches(out / "model.onnx", truth) < 1e-4


def test_hostile_lora_shapes_and_patterns_are_refused_before_any_work(tmp_path):
    """Two thin LoRA matrices may declare a product of terabytes: shapes are checked
    against the weight first. A repeated group in alpha_pattern could match for hours."""
    from extractor.resolve.checkpoint import Checkpoint
    from extractor.resolve.lora import merge_lora

    (tmp_path / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 1, "lora_alpha": 2}))
    state = {"m.base_layer.weight": torch.zeros(4, 4),
             "m.lora_A.default.weight": torch.zeros(1, 1 << 20),
             "m.lora_B.default.weight": torch.zeros(1 << 20, 1)}
    with pytest.raises(CheckpointError, match=r"LoRA update \[1048576, 1048576\] does not fit"):
        merge_lora(Checkpoint(tmp_path / "x.pt", "torch-zip", state, "top level"))
    (tmp_path / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 1, "lora_alpha": 2, "alpha_pattern": {"(a+)+$": 4}}))
    state = {"m.base_layer.weight": torch.zeros(4, 4), "m.lora_A.default.weight": torch.zeros(
        1, 4), "m.lora_B.default.weight": torch.zeros(4, 1)}
    with pytest.raises(CheckpointError, match="repeats a repeated group"):
        merge_lora(Checkpoint(tmp_path / "x.pt", "torch-zip", state, "top level"))


def test_unmerged_lora_over_real_minilm_weights_matches_peft_merge(tmp_path, capsys, minilm_dir):
    """GLiNER fine-tuned with LoRA on all-MiniLM-L6-v2 (12 heads of 32, 6 layers), its
    encoder saved unmerged under GLiNER's attribute: merged as PEFT merges it."""
    from builders.layouts import minilm
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(minilm(minilm_dir), LoraConfig(
        r=8, lora_alpha=16, target_modules=["query", "value"], lora_dropout=0.0)).eval()
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:  # PEFT starts it at zero; training moves it
                p.copy_(torch.randn_like(p) * 0.05)
    truth = merged(peft_model)
    ids = torch.tensor([[101, 7592, 2088, 2003, 102]])
    with torch.no_grad():  # the adapter changes the numbers: a merge that dropped it fails
        gap = truth(ids).last_hidden_state - minilm(minilm_dir)(ids).last_hidden_state
    assert gap.abs().max() > 1e-2
    path = composite(tmp_path / "run", peft_model, prefix="token_rep_layer.bert_layer.model.")
    out = tmp_path / "out"
    code, text, err = _run(capsys, path, "-o", out)
    assert code == EXIT_OK, text + err
    assert "LoRA merged into 12 modules" in text
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["num_attention_heads"] == 12
    assert assert_matches(out / "model.onnx", truth) < 1e-4
