"""Where normlib's compiled kernels live: the cache folder, the build key, the compile step.

:mod:`normlib.fused` hands its C source here; this module compiles it once per
source, compiler, flags and processor into a cache folder
(``$XDG_CACHE_HOME/normlib``, else ``~/.cache/normlib``, else a per-user folder
under the temporary directory) and loads it with :mod:`ctypes`.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
from pathlib import Path


def _cpu_key() -> str:
    """What ``-march=native`` depends on: the processor's model and features (x86 and ARM spell them differently)."""
    keep = ("flags", "features", "model name", "cpu part", "cpu implementer")
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    seen: dict[str, str] = {}
    for ln in lines:
        name = ln.split(":", 1)[0].strip().lower()
        if name in keep and name not in seen:
            seen[name] = ln
    return "\n".join([platform.machine(), platform.processor(), *seen.values()])


def _cache_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("XDG_CACHE_HOME"):
        dirs.append(Path(os.environ["XDG_CACHE_HOME"]) / "normlib")
    try:
        dirs.append(Path.home() / ".cache" / "normlib")
    except RuntimeError:  # no home directory
        pass
    dirs.append(Path(tempfile.gettempdir()) / f"normlib-{os.getuid()}")
    return dirs


def compile_and_load(source: Path, headers: list[Path], flags: list[str]) -> ctypes.CDLL:
    """Compile ``source`` into a shared library in the first usable cache folder and load it.

    The file name is a hash of the sources, the compiler, the flags and the processor,
    so a changed kernel or another machine never loads a stale build.
    """
    cc = os.environ.get("CC", "cc")
    src = source.read_bytes() + b"".join(h.read_bytes() for h in headers)
    key = hashlib.sha256(src + " ".join([cc, *flags, _cpu_key()]).encode()).hexdigest()[:16]
    errors = []
    for cache in _cache_dirs():  # the first writable one
        lib = cache / f"fused-{key}.so"
        try:
            if not lib.exists():
                cache.mkdir(parents=True, exist_ok=True)
                # compile to a private name, then rename: two processes may build at once
                fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
                os.close(fd)
                try:
                    subprocess.run([cc, *flags, str(source), "-o", tmp, "-lm"], check=True,
                                   capture_output=True, text=True, timeout=120)
                    os.replace(tmp, lib)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
            cdll = ctypes.CDLL(str(lib))
            break
        except PermissionError as e:
            errors.append(str(e))
    else:
        raise OSError("no writable cache directory: " + "; ".join(errors))
    return cdll
