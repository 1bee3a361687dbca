"""Per-call overhead of normlib's layers against PyTorch's, and a small CNN's training step.

    .venv/bin/python benchmarks/overhead.py [--repeats 200] [--json benchmarks/overhead.json]

A drop-in layer's fixed cost (Python, checks, dispatch) is what a real model
feels when its activations are small.  Two measurements, each normlib against
torch's native module, runs interleaved (a few calls of each per round, so a
slow moment of the machine hits both alike), medians reported; by default the
clock is the CPU time of the one torch thread, which other processes on a
busy machine disturb less than wall-clock time:

* **per call**: forward + backward of one layer on a tiny input (BatchNorm2d
  on (2, 4, 3, 3), LayerNorm on (2, 8), GroupNorm(2, 4) on (2, 4, 3, 3)),
  float32, one thread; the arithmetic is negligible, so the time is overhead.
  Target: normlib within 3× native.
* **whole model**: one training step (forward, loss, backward, SGD step) of a
  small ResNet-like CNN on (16, 3, 32, 32), with every ``torch.nn.BatchNorm2d``
  swapped for :class:`normlib.nn.BatchNorm2d` (same state).  Target: within 1.15×.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
from torch import nn

import normlib.nn as nnn


def _layers():
    """(name, input shape, torch module, normlib module) for the per-call measurement."""
    return [
        ("BatchNorm2d", (2, 4, 3, 3), nn.BatchNorm2d(4), nnn.BatchNorm2d(4)),
        ("LayerNorm", (2, 8), nn.LayerNorm(8), nnn.LayerNorm(8)),
        ("GroupNorm", (2, 4, 3, 3), nn.GroupNorm(2, 4), nnn.GroupNorm(2, 4)),
    ]


class Block(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input (a ResNet basic block)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.b2(self.c2(torch.relu(self.b1(self.c1(x))))))


def small_resnet(width: int = 16, blocks: int = 3, classes: int = 10) -> nn.Module:
    """A stem, ``blocks`` residual blocks at 32×32 then at 16×16, pooling and a linear head."""
    layers = [nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    layers += [Block(width) for _ in range(blocks)]
    layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU()]
    layers += [Block(2 * width) for _ in range(blocks)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes)]
    return nn.Sequential(*layers)


def swap_batch_norm(model: nn.Module) -> nn.Module:
    """Replace every ``torch.nn.BatchNorm2d`` by :class:`normlib.nn.BatchNorm2d` with the same state."""
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d):
            new = nnn.BatchNorm2d(child.num_features, child.eps, child.momentum)
            new.load_state_dict(child.state_dict())
            setattr(model, name, new)
        else:
            swap_batch_norm(child)
    return model


CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}
CLOCK = "cpu"


def _interleaved(fns: dict, repeats: int, warmup: int, inner: int = 1) -> dict[str, float]:
    """Median seconds per call of each function: ``repeats`` rounds of ``inner`` calls of each, interleaved."""
    now = CLOCKS[CLOCK]
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = now()
            for _ in range(inner):
                f()
            times[k].append((now() - t0) / inner)
    return {k: statistics.median(v) for k, v in times.items()}


def per_call(repeats: int) -> list[dict]:
    rows = []
    for name, shape, native, ours in _layers():
        x = torch.randn(shape, requires_grad=True)
        dy = torch.randn(shape)

        def step(m):
            def run():
                m(x).backward(dy)
            return run

        t = _interleaved({"native": step(native), "normlib": step(ours)}, repeats, warmup=20, inner=10)
        rows.append({"layer": name, "shape": list(shape), "native_us": 1e6 * t["native"],
                     "normlib_us": 1e6 * t["normlib"], "ratio": t["normlib"] / t["native"]})
    return rows


def whole_model(repeats: int) -> dict:
    torch.manual_seed(0)
    native = small_resnet()
    ours = swap_batch_norm(small_resnet())
    ours.load_state_dict(native.state_dict())
    x = torch.randn(16, 3, 32, 32)
    target = torch.randint(0, 10, (16,))

    def step(model):
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def run():
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), target).backward()
            opt.step()
        return run

    t = _interleaved({"native": step(native), "normlib": step(ours)}, repeats, warmup=3)
    n_bn = sum(isinstance(m, nnn.BatchNorm2d) for m in ours.modules())
    return {"model": f"small ResNet, {n_bn} BatchNorm2d, input (16, 3, 32, 32)", "native_ms": 1e3 * t["native"],
            "normlib_ms": 1e3 * t["normlib"], "ratio": t["normlib"] / t["native"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=100, help="rounds (of 10 calls each) of the per-call measurement")
    ap.add_argument("--model-repeats", type=int, default=30, help="rounds of the whole-model measurement")
    ap.add_argument("--clock", choices=list(CLOCKS), default="cpu",
                    help="CPU time of the (one) torch thread, steadier on a busy machine, or wall-clock time")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()
    global CLOCK
    CLOCK = args.clock
    torch.set_num_threads(1)
    calls = per_call(args.repeats)
    for r in calls:
        print(f"{r['layer']:12s} {str(tuple(r['shape'])):14s} native {r['native_us']:7.1f} µs   "
              f"normlib {r['normlib_us']:7.1f} µs   ratio {r['ratio']:.2f} (target ≤ 3)")
    model = whole_model(args.model_repeats)
    print(f"{model['model']}: native {model['native_ms']:.2f} ms, normlib {model['normlib_ms']:.2f} ms, "
          f"ratio {model['ratio']:.3f} (target ≤ 1.15)")
    if args.json:
        meta = {"torch": torch.__version__, "threads": 1, "clock": args.clock, "repeats": args.repeats,
                "model_repeats": args.model_repeats, "load_average_at_end": round(os.getloadavg()[0], 2),
                "machine": platform.processor() or platform.machine(),
                "measured_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "per_call": calls, "whole_model": model}, f, indent=1)


if __name__ == "__main__":
    main()
