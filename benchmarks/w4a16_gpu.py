"""4-bit weight-only (W4A16) Triton kernel vs fp16, bitsandbytes NF4 and PyTorch's int4 kernel on
Llama-2-7B layer shapes.

Lesson 01 (section 11) shows what this script records, labelled with the card and the date, when
the notebook runs without a GPU. For each Linear shape of a Llama-2-7B decoder layer (q/k/v/o
4096x4096, gate/up 11008x4096, down 4096x11008; random weights: fine for speed) and M = 1, 8, 32
tokens it times ``x [M, K] @ W.T``:

* ``fp16``: ``torch.nn.functional.linear`` (cuBLAS);
* ``bnb NF4``: bitsandbytes ``Linear4bit`` (NF4, blocks of 64, double quantization), if
  importable;
* ``W4A16``: ``inferlab.compress.w4a16.w4a16_matmul`` (group 128; the tiles ``tuned_config``
  measures fastest on this GPU on first use, recorded in the row);
* ``torch int4 (tinygemm)``: PyTorch's ``_weight_int4pack_mm`` on the same ``pack_w4`` codes
  (``inferlab.compress.int4_tinygemm``; group 128, ``inner_k_tiles`` 8). It takes bf16
  activations only, so it is timed beside ``bf16`` (``F.linear`` in bf16, cuBLAS) for a like for
  like comparison. Before timing, its output is checked against ``F.linear`` on
  ``dequantize_w4``'s weight for every shape (the largest error over the output's largest value
  is recorded; the script stops if it exceeds ``TINYGEMM_TOL``);

with ``inferlab.compress.w4a16_bench.time_layer`` (CUDA-graph replays of many calls cycling over
copies of the weights larger than L2; ``inferlab.lab.bench.time_fn``: warm-up, synchronisation,
median). It reports microseconds per call, the achieved weight bandwidth (bytes of the weight
format / time) and its share of the copy bandwidth measured here
(``inferlab.lab.bench.measure_bandwidth``), and a decode tokens/s estimate of a 7B model's
Linear layers alone at M = 1 and M = 32. ``--sweep`` also times other block sizes of the W4A16
kernel and records the fastest per shape (what ``kernel_config`` should choose).

    python benchmarks/w4a16_gpu.py                 # a CUDA GPU with Triton: ~3-5 min
    python benchmarks/w4a16_gpu.py --sweep         # plus the block-size sweep: a few min more
    python benchmarks/w4a16_gpu.py --smoke --out /tmp/w4   # CPU: tiny shapes, checks the plumbing

Writes ``benchmarks/results/w4a16_gpu.json`` and ``.md``, and the record
``inferlab/lab/records/w4a16_gpu.json`` (``inferlab.lab.records.save``) that the lesson reads.
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from inferlab.compress.int4_tinygemm import (  # noqa: E402
    Int4TinyGemmLinear,
    check_against_dequantized,
)
from inferlab.compress.w4a16 import (  # noqa: E402
    bits_per_weight,
    fused_w4a16,
    kernel_config,
    pack_w4,
    tuned_for,
)
from inferlab.compress.w4a16_bench import (  # noqa: E402
    LLAMA2_7B_LINEARS,
    decode_estimate,
    time_layer,
    tinygemm_layer,
)
from inferlab.lab import records  # noqa: E402
from inferlab.lab.bench import datasheet_for, measure_bandwidth  # noqa: E402

TINYGEMM = "torch int4 (tinygemm)"
KINDS = ("fp16", "bf16", "bnb NF4", "W4A16", TINYGEMM)
TINYGEMM_TOL = 2e-2     # bf16 activations and scales: ~3e-3 measured on a CPU; a wrong layout ~1
SMOKE_LINEARS = {"tiny 64x96": (64, 96, 2), "tiny 32x160": (32, 160, 1)}   # --smoke, on a CPU


def sweep_configs(m: int, group_size: int):
    """Block sizes tried by ``--sweep`` (the package's choice is always among them): at M = 1
    narrow N tiles and few warps (many programs in flight, the multiply-add path); at larger M
    16-64-row tiles for tl.dot."""
    if m == 1:
        space = itertools.product([1], (4, 8, 16, 32), (128, 256, 512, 1024), (1, 2, 4),
                                  (1, 2, 4), (3,))
    else:
        space = itertools.product([max(16, 1 << (m - 1).bit_length())], (32, 64, 128),
                                  (64, 128, 256), (1, 2, 4), (4,), (3,))
    configs = [dict(block_m=block_m, block_n=block_n, block_k=block_k, split_k=split_k,
                    num_warps=warps, num_stages=stages)
               for block_m, block_n, block_k, split_k, warps, stages in space
               if block_k <= group_size or block_k % group_size == 0]
    package = kernel_config(m, group_size)
    return configs if package in configs else [package, *configs]


def check_tinygemm(n: int, k: int, group_size: int, device: str = "cuda") -> float:
    """tinygemm's output against ``F.linear`` on ``dequantize_w4``'s weight (bf16 activations,
    M = 1 and 32): the largest error over the reference's largest value. Raises if it is wrong
    (nibble order, zero-points or layout), so nothing wrong is ever timed."""
    torch.manual_seed(1)
    weight = (torch.randn(n, k, device=device) * 0.02).to(torch.bfloat16)
    qweight, scales, zeros, _ = pack_w4(weight, group_size)
    layer = Int4TinyGemmLinear.from_packed(qweight, scales, zeros, group_size, k,
                                           dtype=torch.bfloat16)
    err = max(check_against_dequantized(layer, qweight, scales, zeros, m=m) for m in (1, 32))
    if not err <= TINYGEMM_TOL:
        raise RuntimeError(f"torch int4 (tinygemm) is wrong on {n}x{k}: error {err:.3g} of the "
                           f"output's largest value (> {TINYGEMM_TOL})")
    return round(err, 6)


def time_row(m: int, n: int, k: int, group_size: int, **kwargs) -> dict:
    """One shape at M tokens, every way: fp16 cuBLAS, bnb NF4 and W4A16 with fp16 activations
    (``kwargs`` may change that dtype, as ``--smoke`` does), then bf16 cuBLAS and tinygemm with
    bf16 activations."""
    row = time_layer(m, n, k, group_size=group_size, **kwargs)
    kwargs = {key: value for key, value in kwargs.items() if key != "dtype"}
    row.update(time_layer(m, n, k, group_size=group_size, dtype=torch.bfloat16, with_bnb=False,
                          with_w4a16=False, dense_name="bf16",
                          layers={TINYGEMM: lambda w: tinygemm_layer(w, group_size)}, **kwargs))
    return row


def run_sweep(m, n, k, group_size, results_row):
    kernels = {}
    for config in sweep_configs(m, group_size):
        name = "cfg " + json.dumps(config, separators=(",", ":"))
        kernels[name] = (lambda x, q, s, z, g, config=config: fused_w4a16(x, q, s, z, g, config))
    timed = time_layer(m, n, k, kernels=kernels, group_size=group_size, with_bnb=False,
                       repeats=10)
    ok = {name: row for name, row in timed.items() if name.startswith("cfg ") and "us" in row}
    ranked = sorted(ok, key=lambda name: ok[name]["us"])
    best = ranked[0]
    results_row["sweep"] = {"best_config": json.loads(best[4:]), "best_us": ok[best]["us"],
                            "top5": [[ok[name]["us"], json.loads(name[4:])]
                                     for name in ranked[:5]],
                            "package_config": kernel_config(m, group_size),
                            "configs_timed": len(ok),
                            "failed": len(kernels) - len(ok)}
    print(f"    sweep ({len(ok)} configs), fastest:", flush=True)
    for name in ranked[:5]:
        print(f"      {ok[name]['us']:6.1f} us  {name[4:]}", flush=True)


def markdown(record: dict) -> str:
    res = record["results"]
    lines = [f"# W4A16 kernel vs fp16, bitsandbytes NF4 and torch int4 ({record['device']}, "
             f"{record['date']})", "", record["source"], "",
             f"Versions: {res['versions']}. Copy bandwidth measured: "
             f"{res['copy_bandwidth_GB_s']} GB/s (datasheet: {res['datasheet_bandwidth_GB_s']}).",
             "", f"`{TINYGEMM}` takes bf16 activations only: compare it with `bf16` (cuBLAS in "
             "bf16); `fp16`, `bnb NF4` and `W4A16` run with fp16 activations. Its output was "
             "checked against the dequantized weight first (largest error / largest output): "
             + (", ".join(f"{s} {e:.1e}" for s, e in res.get("tinygemm_check_rel_err",
                                                           {}).items()) or "not checked") + ".",
             "", "| shape | M | " + " | ".join(f"{k} us (GB/s, % of copy bw)" for k in KINDS)
             + " |", "|---|---|" + "---|" * len(KINDS)]
    for shape, by_m in res["layers"].items():
        for m, row in by_m.items():
            cells = []
            for kind in KINDS:
                r = row.get(kind, {})
                cells.append(f"{r['us']:.1f} ({r['GB_s']:.0f}, {r['pct_of_copy_bw']:.0f}%)"
                             if "us" in r else r.get("error", "n/a")[:60])
            lines.append(f"| {shape} | {m} | " + " | ".join(cells) + " |")
    lines += ["", "Decode tokens/s of a 7B model's Linear layers alone (32 layers; attention, "
              "norms, lm_head and gaps excluded: an upper bound):", ""]
    for m, by_kind in res["decode_estimate_tok_s"].items():
        lines.append(f"* M = {m}: " + ", ".join(f"{k} {v:.0f}" for k, v in by_kind.items()))
    for note in res.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def smoke(args) -> dict:
    """The whole script's plumbing on the CPU with tiny shapes (nothing recorded)."""
    check = {shape: check_tinygemm(n, k, 32, "cpu") for shape, (n, k, _) in SMOKE_LINEARS.items()}
    layers = {shape: {str(m): time_row(m, n, k, 32, dtype=torch.float32, device="cpu",
                                       min_bytes=1e5, calls=2, repeats=1)
                      for m in args.batches}
              for shape, (n, k, _) in SMOKE_LINEARS.items()}
    for by_m in layers.values():
        for row in by_m.values():
            for r in row.values():
                if "us" in r:
                    r["pct_of_copy_bw"] = 0.0
    estimate = {str(m): {kind: round(decode_estimate(
        {s: layers[s][str(m)][kind]["us"] for s in layers}, m, SMOKE_LINEARS, 2), 1)
        for kind in KINDS if kind != "bnb NF4"} for m in args.batches}
    record = {"device": "CPU (smoke test)", "date": datetime.date.today().isoformat(),
              "source": "benchmarks/w4a16_gpu.py --smoke",
              "results": {"versions": {"torch": torch.__version__},
                          "copy_bandwidth_GB_s": None, "datasheet_bandwidth_GB_s": None,
                          "layers": layers, "decode_estimate_tok_s": estimate,
                          "tinygemm_check_rel_err": check}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "w4a16_gpu.json").write_text(json.dumps(record, indent=1) + "\n")
    (args.out / "w4a16_gpu.md").write_text(markdown(record))
    print(markdown(record))
    return record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--sweep", action="store_true", help="also time other block sizes")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--no-record", action="store_true",
                        help="do not write inferlab/lab/records/w4a16_gpu.json")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes on the CPU (fallback paths): tests the script only")
    args = parser.parse_args(argv)
    if args.smoke:
        return smoke(args)
    if not torch.cuda.is_available():
        sys.exit("benchmarks/w4a16_gpu.py needs a CUDA GPU (none is visible here): the W4A16 "
                 "kernel's correctness is tested on the CPU by tests/test_w4a16.py instead.")
    import triton
    try:
        import bitsandbytes
        bnb_version = bitsandbytes.__version__
    except ImportError:
        bnb_version = "not installed"
    device = torch.cuda.get_device_name()
    versions = {"torch": torch.__version__, "triton": triton.__version__,
                "bitsandbytes": bnb_version}
    print(f"device: {device}; {versions}", flush=True)
    bandwidth = measure_bandwidth("cuda", megabytes=1024, repeats=10)
    sheet = datasheet_for(device)
    print(f"copy bandwidth {bandwidth / 1e9:.0f} GB/s", flush=True)

    check = {}
    for shape, (n, k, _) in LLAMA2_7B_LINEARS.items():      # raises if tinygemm is wrong
        check[shape] = check_tinygemm(n, k, args.group_size)
        print(f"{TINYGEMM} on {shape}: largest error {check[shape]:.1e} of the output's "
              "largest value (vs the dequantized weight)", flush=True)

    layers = {}
    for shape, (n, k, _) in LLAMA2_7B_LINEARS.items():
        layers[shape] = {}
        for m in args.batches:
            row = time_row(m, n, k, args.group_size)
            if "us" in row["W4A16"]:           # the tiles tuned_config chose on first use
                row["W4A16"]["config"] = tuned_for(n, k, m, args.group_size)
            for r in row.values():
                if "us" in r:
                    r["pct_of_copy_bw"] = round(100 * r["GB_s"] * 1e9 / bandwidth, 1)
            print(f"{shape:>20} M={m:<3} " + "  ".join(
                f"{kind} {row[kind]['us']:7.1f} us ({row[kind]['pct_of_copy_bw']:3.0f}%)"
                if "us" in row.get(kind, {}) else f"{kind} failed" for kind in KINDS), flush=True)
            if args.sweep:
                run_sweep(m, n, k, args.group_size, row)
            layers[shape][str(m)] = row

    estimate = {}
    for m in (1, 32):
        if str(m) not in next(iter(layers.values())):
            continue
        estimate[str(m)] = {}
        for kind in KINDS:
            per_shape = {s: layers[s][str(m)].get(kind, {}).get("us") for s in layers}
            if all(per_shape.values()):
                estimate[str(m)][kind] = round(decode_estimate(per_shape, m), 1)
    print("decode tokens/s estimate (7B Linear layers only):", estimate, flush=True)

    results = {
        "model": "Llama-2-7B Linear shapes, random weights, x in fp16 (bf16 for the bf16 and "
                 "torch int4 (tinygemm) rows)",
        "format": f"W4A16: 4-bit codes, fp16 scale + uint8 zero-point per group of "
                  f"{args.group_size} ({bits_per_weight(args.group_size):.3f} bits/weight); "
                  "bnb NF4: blocks of 64, double quantization; torch int4 (tinygemm): the same "
                  "codes, bf16 scale and float zero per group, inner_k_tiles 8 "
                  f"({4 + 32 / args.group_size:.3f} bits/weight)",
        "versions": versions,
        "copy_bandwidth_GB_s": round(bandwidth / 1e9),
        "datasheet_bandwidth_GB_s": sheet[1] if sheet else None,
        "layers": layers,
        "decode_estimate_tok_s": estimate,
        "tinygemm_check_rel_err": check,
    }
    source = ("benchmarks/w4a16_gpu.py: median microseconds per call of CUDA-graph replays "
              "cycling over weight copies larger than L2; bandwidth = weight-format bytes / time")
    date = datetime.date.today().isoformat()
    record = {"device": device, "date": date, "source": source, "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "w4a16_gpu.json").write_text(json.dumps(record, indent=1) + "\n")
    (args.out / "w4a16_gpu.md").write_text(markdown(record))
    print(f"wrote {args.out / 'w4a16_gpu.json'} and .md")
    if not args.no_record:
        print(f"wrote {records.save('w4a16_gpu', device, date, results, source)}")


if __name__ == "__main__":
    main()
