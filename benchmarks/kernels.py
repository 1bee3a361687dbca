"""Time normlib's functional ops against PyTorch's native kernels and print the ratios.

    .venv/bin/python benchmarks/kernels.py [--repeats 21] [--json out.json]

float32, 2 threads, shapes: a CNN activation (32, 64, 32, 32) for Batch and
Group Norm (G=32), a transformer activation (8, 512, 768) for Layer Norm and
RMSNorm.  Runs of native, normlib and autograd-through-elementwise are
interleaved; medians are reported.  Target: normlib/native ≤ 2 for each.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from normbook.timing import format_table, kernel_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall-clock time, or the CPU time of the calling thread (use with --threads 1)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows = kernel_table(args.repeats, clock=args.clock)
    print(format_table(rows))
    worst = max(r["normlib/native"] for r in rows if "normlib/native" in r)
    print(f"\nworst normlib/native ratio: {worst:.2f} (target ≤ 2.00); {time.perf_counter() - t0:.1f} s")
    if args.json:
        meta = {"torch": torch.__version__, "threads": args.threads, "repeats": args.repeats, "clock": args.clock,
                "load_average_at_end": round(os.getloadavg()[0], 2),
                "machine": platform.processor() or platform.machine(),
                "measured_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
