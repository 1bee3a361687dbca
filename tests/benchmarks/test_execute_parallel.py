"""benchmarks/execute_parallel.py fills a jupyter-cache with executed notebooks, two at a time."""
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
execute_parallel = pytest.importorskip("execute_parallel")


def _notebook(path: Path, source: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_execute_into_cache_records_outputs_and_failures(tmp_path):
    from jupyter_cache import get_cache

    good = _notebook(tmp_path / "good.ipynb", "print(6 * 7)")
    bad = _notebook(tmp_path / "bad.ipynb", "raise ValueError('no')")
    res = execute_parallel.execute_into_cache(tmp_path / "cache", [good, bad], procs=2)
    assert res["executed"] == 2
    assert res["failed"] == [str(bad.absolute())]
    cache = get_cache(str(tmp_path / "cache"))
    (record,) = cache.list_cache_records()
    assert record.uri == str(good.absolute())
    cached = cache.get_cache_bundle(record.pk).nb
    assert cached.cells[0].outputs[0]["text"] == "42\n"
    # a second call finds the good notebook cached and runs only the failing one again
    again = execute_parallel.execute_into_cache(tmp_path / "cache", [good, bad], procs=2)
    assert again["executed"] == 1


def test_a_kernel_that_died_at_start_is_started_again(tmp_path, monkeypatch):
    from jupyter_cache import get_cache

    good = _notebook(tmp_path / "good.ipynb", "print(6 * 7)")
    starts = tmp_path / "starts"  # a file: the worker runs in a forked process
    real = execute_parallel.single_nb_execution

    def flaky(nb, **kwargs):  # the first start loses the port race, as jupyter_client reports it
        with open(starts, "a") as f:
            f.write("x")
        if starts.read_text() == "x":
            raise RuntimeError("Kernel died before replying to kernel_info")
        return real(nb, **kwargs)

    monkeypatch.setattr(execute_parallel, "single_nb_execution", flaky)
    res = execute_parallel.execute_into_cache(tmp_path / "cache", [good], procs=1)
    assert res["failed"] == [] and starts.read_text() == "xx"
    assert len(get_cache(str(tmp_path / "cache")).list_cache_records()) == 1


def test_a_failing_cell_is_not_run_again(tmp_path, monkeypatch):
    bad = _notebook(tmp_path / "bad.ipynb", "open('runs', 'a').write('x'); raise ValueError('no')")
    res = execute_parallel.execute_into_cache(tmp_path / "cache", [bad], procs=1)
    assert res["failed"] == [str(bad.absolute())]
    assert (tmp_path / "runs").read_text() == "x"
