"""Time encoder detection on a bert-large composite (OneIE layout, meta tensors).

    python -m benchmarks.bench_detect

Builds OneIE's key set around a bert-large encoder on the meta device (names
and shapes only, no memory), then times `find_encoders` (signatures cached on
disk, as after the first run) and the first run's signature build. Target:
detection well under a second.
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
def main() -> None:
    import tempfile

    from transformers import BertConfig

    from extractor.resolve import encoders
    from extractor.resolve.encoders import build_meta, find_encoders
    from tests.builders.layouts import oneie_state

    large = BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                       intermediate_size=4096)
    state = oneie_state(build_meta(large))
    with tempfile.TemporaryDirectory() as cache:
        os.environ["SUBGRAFT_CACHE"] = cache
        encoders._signatures.cache_clear()
        start = time.perf_counter()
        encoders.signatures()
        cold = time.perf_counter() - start
        encoders._signatures.cache_clear()
        start = time.perf_counter()
        encoders.signatures()
        read = time.perf_counter() - start
        runs = []
        for _ in range(20):
            start = time.perf_counter()
            found = find_encoders(state)
            runs.append(time.perf_counter() - start)
    print(f"{len(state)} keys; found {[(m.prefix, m.layout) for m in found]}")
    print(f"signatures: first build {cold:.2f} s ({len(encoders.ENCODER_TYPES)} types), "
          f"read from the cache {read * 1000:.1f} ms")
    print(f"find_encoders: median {statistics.median(runs) * 1000:.1f} ms, "
          f"max {max(runs) * 1000:.1f} ms over {len(runs)} runs")


if __name__ == "__main__":
    main()
