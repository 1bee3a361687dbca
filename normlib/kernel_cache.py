"""Where normlib's compiled kernels live: the cache folder, the build key, the compile step.

:mod:`normlib.fused` hands its C source here; this module compiles it once per
source, compiler, flags and processor into a cache folder
(``$XDG_CACHE_HOME/normlib``, else ``~/.cache/normlib``, else a per-user folder
under the temporary directory) and loads it with :mod:`ctypes`.

A shared library is code that runs in the caller's process, so the cache is
handled as untrusted ground:

* **Ownership.** A cache folder is created with mode 0700; an existing folder
  or library that is not owned by the current user, or that group or others
  may write, is refused with one :class:`RuntimeWarning` and the next folder is
  tried.  A predictable ``/tmp/normlib-<uid>`` planted by another local user is
  therefore never used.
* **Integrity.** The compiler writes to a private temporary name; the file is
  renamed to its cache name only after it passed the load check (an ELF whose
  loadable segments lie inside the file, that the dynamic loader accepts and
  that exports every requested symbol).  A cached library that fails the same
  check (truncated, empty, garbage, a valid ELF without the kernels) is rebuilt
  once; if the fresh build fails the check too, :class:`KernelBuildError` is
  raised and the caller falls back to its slower path.  The ELF check comes
  first because the loader itself kills the process with a bus error on a
  library whose segments run past the end of the file.
* **Any** :class:`OSError` on a folder (read-only file system, a path that is a
  file, no permission) moves on to the next folder.

``CC`` may carry arguments (``CC="gcc -O0"``); it is split as a shell (and
make) would split it, with :func:`shlex.split`.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shlex
import stat
import struct
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

__all__ = ["KernelBuildError", "compile_and_load", "compiler", "library_name"]


class KernelBuildError(RuntimeError):
    """The compiler failed, or produced a library that does not pass the load check."""


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


def compiler() -> list[str]:
    """The C compiler command: ``$CC`` split like a shell splits it (``"gcc -O0"`` → two words), else ``cc``."""
    words = shlex.split(os.environ.get("CC", ""))
    return words or ["cc"]


def library_name(source: Path, headers: Sequence[Path], flags: Sequence[str]) -> str:
    """The cache file name: ``fused-<key>.so``, the key a hash of the sources, ``$CC``, the flags and the processor."""
    src = source.read_bytes() + b"".join(h.read_bytes() for h in headers)
    key = hashlib.sha256(src + " ".join([*compiler(), *flags, _cpu_key()]).encode()).hexdigest()[:16]
    return f"fused-{key}.so"


class _Unsafe(Exception):
    """A cache folder or file that another user could have written."""


def _check_owner(st: os.stat_result, path: Path, what: str) -> None:
    if st.st_uid != os.geteuid():
        raise _Unsafe(f"{what} {path} is owned by uid {st.st_uid}, not by the current user (uid {os.geteuid()})")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise _Unsafe(f"{what} {path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")


def _private_dir(path: Path) -> None:
    """Create ``path`` with mode 0700 (parents as usual), or check that the existing one is private.

    Raises :class:`_Unsafe` for a folder another user owns or may write, and
    :class:`OSError` for a folder that cannot be made (read-only file system, a
    file in the way, no permission).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.stat(path)  # follows a symbolic link: what counts is the folder the files land in
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{path} is not a directory")
    _check_owner(st, path, "cache folder")


def _check_elf(path: Path) -> None:
    """Raise :class:`KernelBuildError` unless ``path`` is a complete ELF shared object.

    The dynamic loader maps each loadable segment from the file; a segment
    that runs past the end (a truncated file) is a bus error when it is
    touched, which no Python code can catch.  So the program headers are read
    here first.  On systems whose libraries are not ELF, nothing is checked here.
    """
    if not sys.platform.startswith("linux"):
        return
    data = path.read_bytes()
    size = len(data)
    if size < 64 or data[:4] != b"\x7fELF":
        raise KernelBuildError(f"{path.name} is not an ELF shared object ({size} bytes)")
    is64, order = data[4] == 2, "<" if data[5] == 1 else ">"
    if is64:
        phoff, = struct.unpack_from(order + "Q", data, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 54)
        fmt, fields = order + "IIQQQQQQ", (2, 5)  # p_type, p_flags, p_offset, ..., p_filesz
    else:
        phoff, = struct.unpack_from(order + "I", data, 28)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 42)
        fmt, fields = order + "IIIIIIII", (1, 4)  # p_type, p_offset, ..., p_filesz
    if phnum == 0 or phoff + phnum * phentsize > size or phentsize < struct.calcsize(fmt):
        raise KernelBuildError(f"{path.name} is truncated: its program headers end past the file ({size} bytes)")
    for i in range(phnum):
        h = struct.unpack_from(fmt, data, phoff + i * phentsize)
        offset, filesz = h[fields[0]], h[fields[1]]
        if h[0] == 1 and offset + filesz > size:  # PT_LOAD
            raise KernelBuildError(
                f"{path.name} is truncated: a loadable segment ends at byte {offset + filesz}, the file at {size}"
            )


def _load_checked(path: Path, symbols: Sequence[str]) -> ctypes.CDLL:
    """Load ``path`` after :func:`_check_elf`; raise :class:`KernelBuildError` if it fails or lacks a symbol."""
    _check_elf(path)
    try:
        cdll = ctypes.CDLL(str(path))
    except OSError as e:
        raise KernelBuildError(f"{path.name} does not load: {e}") from None
    missing = [s for s in symbols if not hasattr(cdll, s)]
    if missing:
        raise KernelBuildError(f"{path.name} lacks the symbols {', '.join(missing)}")
    return cdll


def _compile(cc: list[str], flags: Sequence[str], source: Path, folder: Path, symbols: Sequence[str]):
    """Compile into a private temporary file in ``folder``, check it, rename it; return (CDLL, temp path).

    :class:`OSError` from the folder (cannot create the temporary file, cannot
    rename) propagates; a compiler that is missing, fails or times out, or
    output that fails the load check, raise :class:`KernelBuildError`.
    """
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=folder)
    os.close(fd)
    try:
        try:
            subprocess.run([*cc, *flags, str(source), "-o", tmp, "-lm"], check=True,
                           capture_output=True, text=True, timeout=120)
        except subprocess.CalledProcessError as e:
            raise KernelBuildError(f"{shlex.join(cc)} failed: {(e.stderr or '').strip()[:300]}") from None
        except subprocess.TimeoutExpired:
            raise KernelBuildError(f"{shlex.join(cc)} took longer than 120 s") from None
        except OSError as e:  # the compiler itself is missing or not executable
            raise KernelBuildError(f"cannot run the C compiler {shlex.join(cc)}: {e}") from None
        os.chmod(tmp, 0o700)  # the linker created it with the umask's mode
        cdll = _load_checked(Path(tmp), symbols)
        return cdll, tmp
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def compile_and_load(source: Path, headers: list[Path], flags: list[str],
                     symbols: Sequence[str] = ()) -> ctypes.CDLL:
    """Compile ``source`` into a shared library in the first usable cache folder and load it.

    The file name is a hash of the sources, the compiler, the flags and the
    processor, so a changed kernel or another machine never loads a stale
    build.  ``symbols`` are the names the library must export (the load check).

    Raises :class:`KernelBuildError` when the compiler fails or its output
    fails the load check (after one rebuild of a bad cache entry), and
    :class:`OSError` when no cache folder is usable; each refused folder warns
    once (:class:`RuntimeWarning`).
    """
    cc = compiler()
    name = library_name(source, headers, flags)
    errors = []
    for folder in _cache_dirs():
        lib = folder / name
        try:
            _private_dir(folder)
            try:
                st = os.stat(lib)
            except FileNotFoundError:
                st = None
            bad = None
            if st is not None:
                _check_owner(st, lib, "cached library")
                try:
                    return _load_checked(lib, symbols)
                except KernelBuildError as e:
                    bad = e  # rebuilt once, below, over the bad entry
            try:
                cdll, tmp = _compile(cc, flags, source, folder, symbols)
            except KernelBuildError as e:
                if bad is not None:
                    raise KernelBuildError(f"the cached {bad}, and the rebuild failed: {e}") from None
                raise
            os.replace(tmp, lib)  # atomic: another process sees the old file or the checked new one
            return cdll
        except _Unsafe as e:
            warnings.warn(f"normlib.kernel_cache: refusing {e}; trying the next folder", RuntimeWarning,
                          stacklevel=2)
            errors.append(str(e))
        except OSError as e:  # read-only, not a directory, no permission, ...: the next folder
            errors.append(f"{folder}: {e}")
    raise OSError("no usable cache folder for the compiled kernels: " + "; ".join(errors))
