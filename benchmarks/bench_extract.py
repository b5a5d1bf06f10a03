"""Extract + export a bert-large-sized composite checkpoint: wall time and peak RSS.

    python -m benchmarks.bench_extract [--workdir DIR] [--keep]

Builds a OneIE-layout checkpoint (random bert-large-cased weights under `bert.`
plus task heads, ~1.3 GB), then runs, each in a fresh process:
- subgraft: `python -m extractor CKPT --prefix bert.` (load, rebuild, save, export, verify);
- naive: load the whole composite into a live model and export its `bert` sub-module
  with torch.onnx.export at a (2, 8) dummy, no verification (what people do today).
Peak RSS is sampled every 50 ms over the whole process tree (subgraft exports large
models in a child process), next to the largest single process's ru_maxrss; the
target is subgraft < 2.5x the checkpoint size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MAKE_CHECKPOINT = textwrap.dedent("""
    import sys, torch
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    config = BertConfig(vocab_size=28996, hidden_size=1024, num_hidden_layers=24,
                        num_attention_heads=16, intermediate_size=4096)
    state = {"bert." + k: v for k, v in BertModel(config).state_dict().items()}
    state["entity_label_ffn.layers.0.weight"] = torch.randn(150, 1024)
    state["trigger_crf.transition"] = torch.randn(11, 11)
    state["global_feature_weights"] = torch.randn(13)
    torch.save({"model": state, "config": {"bert_model_name": "bert-large-cased"},
                "vocabs": {"entity_type": {"O": 0}}, "valid": {}}, sys.argv[1])
""")

NAIVE = textwrap.dedent("""
    import sys, torch
    from transformers import BertConfig, BertModel

    class OneIE(torch.nn.Module):  # the live composite model, as a research repo builds it
        def __init__(self):
            super().__init__()
            self.bert = BertModel(BertConfig(vocab_size=28996, hidden_size=1024,
                num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096))
            self.entity_label_ffn = torch.nn.Module()
            self.entity_label_ffn.layers = torch.nn.ModuleList([torch.nn.Linear(1024, 150)])
            self.trigger_crf = torch.nn.Module()
            self.trigger_crf.transition = torch.nn.Parameter(torch.zeros(11, 11))
            self.global_feature_weights = torch.nn.Parameter(torch.zeros(13))

    class Bert(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert
        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    checkpoint = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
    model = OneIE()
    state = checkpoint["model"]
    state["entity_label_ffn.layers.0.bias"] = torch.zeros(150)
    model.load_state_dict(state)
    model.eval()
    ids = torch.randint(0, 28996, (2, 8))
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    torch.onnx.export(Bert(model.bert).eval(), (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                      sys.argv[2], input_names=["input_ids", "attention_mask", "token_type_ids"],
                      dynamic_shapes=({0: batch, 1: seq},) * 3, dynamo=True, verbose=False)
""")


def _tree_rss_mb(root: int) -> float:
    """Resident memory of `root` and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(rss.get(p, 0) for p in tree) / 2**20


def run(argv: list[str]) -> tuple[float, float, float, int]:
    """Wall s, peak RSS of the process tree (sampled) and of its largest process, exit code."""
    start = time.perf_counter()
    child = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    peak = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_mb(child.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(child.pid, 0)
    stop.set()
    sampler.join()
    wall = time.perf_counter() - start
    return wall, peak, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="where to build (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint and outputs")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="subgraft-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = workdir / "oneie_large.bin"
    try:
        if not checkpoint.exists():
            run([sys.executable, "-c", MAKE_CHECKPOINT, str(checkpoint)])
        size_mb = checkpoint.stat().st_size / 2**20
        print(
            f"checkpoint: {checkpoint} ({size_mb:,.0f} MB), {os.cpu_count()} cores, "
            f"torch threads default"
        )
        rows = [
            (
                "subgraft extract+export+verify",
                run(
                    [
                        sys.executable,
                        "-m",
                        "extractor",
                        str(checkpoint),
                        "--prefix",
                        "bert.",
                        "-o",
                        str(workdir / "out"),
                        "--force",
                    ]
                ),
            ),
            (
                "naive: live model, export sub-module",
                run([sys.executable, "-c", NAIVE, str(checkpoint), str(workdir / "naive.onnx")]),
            ),
        ]
        print(
            "| job | wall s | peak RSS, all processes (MB) | / checkpoint | "
            "largest process (MB) | exit |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for name, (wall, tree, largest, code) in rows:
            print(
                f"| {name} | {wall:.1f} | {tree:,.0f} | {tree / size_mb:.2f}x | "
                f"{largest:,.0f} | {code} |"
            )
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
