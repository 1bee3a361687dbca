"""Execute the book's chapters into Jupyter Book's execution cache, several at a time.

    .venv/bin/python benchmarks/execute_parallel.py [CACHE_DIR] [--procs 2]

``jupyter-book build`` (``execute_notebooks: cache``) executes the chapters one
after another.  This fills the same jupyter-cache first, with jupyter-cache's
own multiprocess executor, so the build that follows finds every chapter cached
and only renders.  CACHE_DIR is the build's ``.jupyter_cache``
(``_build/.jupyter_cache`` for ``jupyter-book build .``, or
``<path-output>/_build/.jupyter_cache``).  The notebooks are the ``.ipynb`` files
named in ``_toc.yml``.  Each one still runs in its own directory with its own
kernel (the outputs are the same as a serial run: every chapter fixes its seeds
and thread count in ``setup()``).  Exits non-zero if a notebook fails.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import yaml
from jupyter_cache.executors.basic import ExecutionWorkerLocalMProc
from jupyter_cache.executors.utils import single_nb_execution

ROOT = Path(__file__).resolve().parent.parent


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """The ``.ipynb`` files named in ``_toc.yml``, in reading order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    out = []
    for f in files:
        p = root / f
        p = p if p.suffix else p.with_suffix(".ipynb")
        if p.suffix == ".ipynb" and p.exists():
            out.append(p)
    return out


def _expected_seconds(name: str) -> float:
    """A chapter's execution time in the last measured build (0 when unknown)."""
    try:
        times = json.loads((ROOT / "benchmarks" / "build_times.json").read_text())["notebook_execution_s"]
    except (OSError, KeyError, ValueError):
        return 0.0
    return float(times.get(name, 0.0))


class _Worker(ExecutionWorkerLocalMProc):
    """jupyter-cache's worker, with the kernel stopped at once when the notebook has run.

    nbclient's default ("graceful") asks the kernel to shut down and waits for
    it to exit: about a second a chapter on this machine, idle time in which the
    worker could run the next chapter.  Every output is in the notebook by
    then, so nothing is lost by ending the process directly.
    """

    @staticmethod
    def execute(project_nb, data):
        for attempt in (1, 2):
            try:
                return single_nb_execution(project_nb.nb, cwd=str(Path(project_nb.uri).parent),
                                           timeout=data.timeout, allow_errors=data.allow_errors,
                                           shutdown_kernel="immediate")
            except RuntimeError as err:
                # A kernel that dies before it answers has lost a race for its TCP ports:
                # jupyter_client picks free ports and releases them, the kernel binds them a
                # moment later, and a kernel starting beside it can take one first. Not the
                # chapter's failure (no cell ran): start it once more.
                if attempt == 2 or "Kernel died before replying to kernel_info" not in str(err):
                    raise


def execute_into_cache(cache_dir: Path, notebooks: list[Path], procs: int = 2, timeout: int = 600) -> dict:
    """Run every notebook not yet cached, ``procs`` at a time; return ``{uri: seconds}`` and failures."""
    from jupyter_cache import get_cache
    from jupyter_cache.executors.basic import ProcessData

    # Two chapters share two cores, each with two torch threads: an OpenMP thread that
    # spins while it waits for work takes the core from the other chapter. Passive
    # waiting (the kernels inherit this environment) sleeps instead.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cache = get_cache(str(cache_dir))
    for nb in notebooks:
        cache.add_nb_to_project(str(nb))
    uris = [str(nb.absolute()) for nb in notebooks]
    todo = cache.list_unexecuted(filter_uris=uris)  # no cache record for the current code cells
    t0 = time.perf_counter()
    worker = _Worker()
    # Longest first, one notebook at a time per worker: the batch-size sweep
    # must not start last behind a queue of short chapters.
    todo = sorted(todo, key=lambda r: -_expected_seconds(Path(r.uri).name))
    jobs = [ProcessData(r.pk, r.uri, cache, timeout, False) for r in todo]
    with mp.get_context("fork").Pool(procs) as pool:
        results = list(pool.imap_unordered(worker, jobs, chunksize=1))
    failed = [uri for code, uri in results if code != 0]
    times = {}
    for rec in cache.list_cache_records():
        times[rec.uri] = rec.data.get("execution_seconds")
    return {"executed": len(jobs), "failed": failed, "wall_s": time.perf_counter() - t0, "times": times}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache_dir", nargs="?", default=str(ROOT / "_build" / ".jupyter_cache"))
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=600)
    args = ap.parse_args()
    res = execute_into_cache(Path(args.cache_dir), toc_notebooks(), args.procs, args.timeout)
    print(f"executed {res['executed']} notebook(s) in {res['wall_s']:.1f} s with {args.procs} processes")
    for uri in res["failed"]:
        print(f"FAILED: {uri}", file=sys.stderr)
    return 1 if res["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
