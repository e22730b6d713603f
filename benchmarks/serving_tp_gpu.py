"""Tensor parallelism on 2 GPUs (NCCL): the lesson-11 MLP split at Llama-2-7B size.

Run on a machine with 2 GPUs (``python benchmarks/serving_tp_gpu.py OUT.json``); copy the JSON
back and record it with ``python benchmarks/serving_tp_gpu.py --record OUT.json`` which writes
``inferlab/lab/records/tp_gpu.json`` (device name and date included) for notebook 11 to show.
Random weights are fine here: only speed and the split's exactness are measured.
"""
from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOKENS = (1, 16, 128, 1024, 4096)


def measure() -> dict:
    from inferlab.serving.parallel import run_tp
    out = {}
    for dtype in ("bfloat16", "float32"):
        out[dtype] = run_tp(world_size=2, backend="nccl", tokens=TOKENS, weights="random",
                            hidden=4096, intermediate=11008, dtype=dtype, repeats=20, timeout=400)
    return out


def record(path: str) -> None:
    from inferlab.lab import records
    results = json.loads(Path(path).read_text())
    device = results["bfloat16"]["device"]
    saved = records.save("tp_gpu", device=f"2x {device}",
                         date=results.get("date") or str(datetime.date.today()), results=results,
                         source="benchmarks/serving_tp_gpu.py: inferlab.serving.parallel tp, "
                                "NCCL, one process per GPU, Llama-2-7B MLP shape (4096 -> 11008), "
                                "random weights, median of 20 timed calls")
    print(f"wrote {saved}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--record"]:
        record(sys.argv[2])
    else:
        result = measure()
        result["date"] = str(datetime.date.today())
        text = json.dumps(result, indent=1)
        print(text)
        if sys.argv[1:]:
            Path(sys.argv[1]).write_text(text)
