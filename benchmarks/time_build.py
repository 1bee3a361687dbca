"""Time the whole book: a build from a clean cache, then a rebuild with nothing changed.

    .venv/bin/python benchmarks/time_build.py [--out /tmp/perf-build] [--serial] [--json FILE]

Builds into a private folder (``--path-output``), never into the repository's
``_build``.  The clean build starts from an empty folder, so every chapter is
executed; with the default ``--parallel`` the chapters are first executed two at
a time into the build's jupyter-cache (:mod:`execute_parallel`, what ``make
book`` does), ``--serial`` leaves execution to ``jupyter-book build`` (one
chapter after another).  The rebuild runs the same command again: Jupyter
Book's cache serves every chapter and Sphinx only re-reads changed files.

Prints both times and writes them, with each chapter's execution time from the
cache, to ``benchmarks/build_times.json`` (read by the chapter "How fast is
normlib?").  Budgets: clean ≤ 120 s, rebuild ≤ 15 s.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from execute_parallel import execute_into_cache, toc_notebooks  # noqa: E402

BUDGET_CLEAN_S, BUDGET_REBUILD_S = 120.0, 15.0


def _jb_build(out: Path, strict: bool, config: Path | None = None) -> float:
    cmd = [str(ROOT / ".venv" / "bin" / "jupyter-book"), "build", str(ROOT), "--path-output", str(out), "--builder", "html"]
    if config is not None:
        cmd += ["--config", str(config)]
    if strict:
        cmd += ["--warningiserror", "--keep-going"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    (out / "build-log.txt").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"jupyter-book build failed (exit {proc.returncode}); log in {out / 'build-log.txt'}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/perf-build", help="private build folder (wiped first)")
    ap.add_argument("--serial", action="store_true", help="let jupyter-book execute the chapters one by one")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--strict", action="store_true", help="build with --warningiserror --keep-going (as make book-strict)")
    ap.add_argument("--tolerate-failures", action="store_true",
                    help="time the build even if a chapter fails (its error is recorded, not raised)")
    ap.add_argument("--json", default=str(HERE / "build_times.json"))
    args = ap.parse_args()
    out = Path(args.out).resolve()
    if out == (ROOT / "_build").resolve() or out == ROOT.resolve():
        raise SystemExit("refusing to build into the repository's own _build: pass a private --out")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cache_dir = out / "_build" / ".jupyter_cache"
    notebooks = toc_notebooks()
    load0 = os.getloadavg()[0]

    config = None
    if args.tolerate_failures:  # same configuration, but a failing cell does not stop the build
        import yaml

        cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
        cfg.setdefault("execute", {})["raise_on_error"] = False
        cfg["execute"]["allow_errors"] = True
        local = cfg.get("sphinx", {}).get("local_extensions") or {}
        for name, rel in local.items():  # resolved relative to the config file
            local[name] = str((ROOT / rel).resolve())
        config = out.parent / (out.name + "-config.yml")
        config.write_text(yaml.safe_dump(cfg))
    t0 = time.perf_counter()
    pre = None
    if not args.serial:
        pre = execute_into_cache(cache_dir, notebooks, args.procs)
        if pre["failed"] and not args.tolerate_failures:
            raise SystemExit(f"chapters failed to execute: {pre['failed']}")
    t_render = _jb_build(out, args.strict, config)
    clean = time.perf_counter() - t0
    rebuild = _jb_build(out, args.strict, config)

    from jupyter_cache import get_cache

    per_nb = {}
    for rec in get_cache(str(cache_dir)).list_cache_records():
        per_nb[Path(rec.uri).name] = round(float(rec.data.get("execution_seconds") or 0.0), 2)
    result = {
        "clean_build_s": round(clean, 1),
        "parallel_execute_s": None if pre is None else round(pre["wall_s"], 1),
        "render_after_execute_s": round(t_render, 1),
        "rebuild_s": round(rebuild, 1),
        "budget_clean_s": BUDGET_CLEAN_S,
        "budget_rebuild_s": BUDGET_REBUILD_S,
        "mode": "serial (jupyter-book executes)" if args.serial else f"parallel pre-execution, {args.procs} processes",
        "notebooks": len(notebooks),
        "failed_notebooks": [] if pre is None else [Path(u).name for u in pre["failed"]],
        "notebook_execution_s": dict(sorted(per_nb.items())),
        "sum_of_notebook_execution_s": round(sum(per_nb.values()), 1),
        "cpus": os.cpu_count(),
        "load_average_at_start": round(load0, 2),
        "measured_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
    }
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"clean build: {clean:6.1f} s  (budget {BUDGET_CLEAN_S:.0f} s; {result['mode']})")
    if pre is not None:
        print(f"  of which parallel execution {pre['wall_s']:.1f} s, rendering {t_render:.1f} s")
    print(f"rebuild:     {rebuild:6.1f} s  (budget {BUDGET_REBUILD_S:.0f} s)")
    print(f"{len(notebooks)} chapters; sum of their execution times {result['sum_of_notebook_execution_s']:.1f} s; "
          f"load average at start {load0:.1f} on {os.cpu_count()} CPUs; written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
