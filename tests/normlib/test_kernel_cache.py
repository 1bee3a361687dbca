"""Tests of normlib.kernel_cache (and of normlib.fused's fallback when the cache fails).

The cache runs code from disk in the caller's process, so it must refuse what
another user could have planted (issue 16, item 2), survive and repair a bad
entry (item 3), and move on to the next folder on any OSError (item 4).  Most
tests compile a one-function C file into folders under ``tmp_path``
(``_cache_dirs`` patched), which takes a fraction of a second; the tests of
:mod:`normlib.fused` reload the real kernels into a temporary cache.
"""
from __future__ import annotations

import errno
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import normlib.functional as NF
from normlib import fused, kernel_cache
from normlib.kernel_cache import KernelBuildError, compile_and_load, library_name

needs_cc = pytest.mark.skipif(shutil.which(kernel_cache.compiler()[0]) is None, reason="no C compiler")

KERNEL = "int kern(void) { return 42; }\n"
OTHER = "int something_else(void) { return 7; }\n"
FLAGS = ["-shared", "-fPIC"]
OTHER_UID = 54321  # an owner that is not the current user (the tests run as root or as a user)


@pytest.fixture
def src(tmp_path):
    p = tmp_path / "k.c"
    p.write_text(KERNEL)
    return p


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """Three candidate cache folders under tmp_path, in order; none exists yet."""
    dirs = [tmp_path / "first" / "normlib", tmp_path / "second" / "normlib", tmp_path / "third" / "normlib"]
    monkeypatch.setattr(kernel_cache, "_cache_dirs", lambda: list(dirs))
    monkeypatch.delenv("CC", raising=False)
    return dirs


def _cc(source: Path, out: Path, *extra: str) -> Path:
    subprocess.run([*kernel_cache.compiler(), *FLAGS, *extra, str(source), "-o", str(out)], check=True)
    return out


def _plant(folder: Path, name: str, content: bytes, mode: int = 0o700) -> Path:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    f = folder / name
    f.write_bytes(content)
    f.chmod(mode)
    return f


def _marker_library(tmp_path: Path, marker: Path) -> bytes:
    """A library that exports ``kern`` and, when loaded, creates ``marker`` (what planted code would do)."""
    c = tmp_path / "evil.c"
    c.write_text(textwrap.dedent(f"""
        #include <stdio.h>
        int kern(void) {{ return 666; }}
        __attribute__((constructor)) static void planted(void) {{
            FILE *f = fopen("{marker}", "w"); if (f) fclose(f);
        }}
    """))
    return _cc(c, tmp_path / "evil.so").read_bytes()


def _no_temporaries(folder: Path) -> bool:
    return not any(p.name.startswith(".build-") for p in folder.iterdir())


# ---------------------------------------------------------------------------
# The compile step and the key
# ---------------------------------------------------------------------------
@needs_cc
def test_a_fresh_build_lands_in_a_private_folder_and_loads(src, folders):
    lib = compile_and_load(src, [], FLAGS, symbols=["kern"])
    assert lib.kern() == 42
    st = os.stat(folders[0])
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
    built = folders[0] / library_name(src, [], FLAGS)
    assert built.exists() and not os.stat(built).st_mode & 0o022
    assert _no_temporaries(folders[0])
    assert compile_and_load(src, [], FLAGS, symbols=["kern"]).kern() == 42  # the cached file, loaded again


def test_the_key_names_the_processor_the_compiler_and_the_flags(src, monkeypatch):
    assert platform.machine() in kernel_cache._cpu_key()
    monkeypatch.delenv("CC", raising=False)
    base = library_name(src, [], FLAGS)
    assert base.startswith("fused-") and base.endswith(".so")
    assert library_name(src, [], [*FLAGS, "-O2"]) != base
    monkeypatch.setenv("CC", "cc -O0")
    assert library_name(src, [], FLAGS) != base


def test_the_default_folders_end_with_a_per_user_folder_in_the_temporary_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    dirs = kernel_cache._cache_dirs()
    assert dirs[0] == tmp_path / "xdg" / "normlib" and len(dirs) >= 2
    assert dirs[-1] == Path(tempfile.gettempdir()) / f"normlib-{os.getuid()}"


# ---------------------------------------------------------------------------
# Item 2: a folder or file another user could have written is refused
# ---------------------------------------------------------------------------
@needs_cc
def test_a_folder_owned_by_another_user_is_refused_and_its_planted_library_never_loads(src, folders, tmp_path):
    marker = tmp_path / "planted-code-ran"
    name = library_name(src, [], FLAGS)
    _plant(folders[0], name, _marker_library(tmp_path, marker), mode=0o755)
    os.chown(folders[0], OTHER_UID, OTHER_UID)  # another user created the predictable folder first
    with pytest.warns(RuntimeWarning, match=rf"refusing cache folder .*first/normlib is owned by uid {OTHER_UID}"):
        lib = compile_and_load(src, [], FLAGS, symbols=["kern"])
    assert lib.kern() == 42 and not marker.exists()
    assert (folders[1] / name).exists()  # built in the next folder instead


@needs_cc
@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777, 0o1777])
def test_a_folder_writable_by_group_or_others_is_refused(src, folders, mode):
    folders[0].mkdir(parents=True)
    folders[0].chmod(mode)
    with pytest.warns(RuntimeWarning, match=r"first/normlib is writable by group or others"):
        assert compile_and_load(src, [], FLAGS, symbols=["kern"]).kern() == 42
    assert not any(folders[0].iterdir()) and any(folders[1].iterdir())


@needs_cc
def test_a_library_owned_by_another_user_is_refused_even_in_a_private_folder(src, folders, tmp_path):
    marker = tmp_path / "planted-code-ran"
    planted = _plant(folders[0], library_name(src, [], FLAGS), _marker_library(tmp_path, marker), 0o755)
    os.chown(planted, OTHER_UID, OTHER_UID)
    with pytest.warns(RuntimeWarning, match=rf"refusing cached library .* is owned by uid {OTHER_UID}"):
        assert compile_and_load(src, [], FLAGS, symbols=["kern"]).kern() == 42
    assert not marker.exists()


@needs_cc
def test_a_library_writable_by_others_is_refused(src, folders, tmp_path):
    marker = tmp_path / "planted-code-ran"
    _plant(folders[0], library_name(src, [], FLAGS), _marker_library(tmp_path, marker), 0o777)
    with pytest.warns(RuntimeWarning, match=r"refusing cached library .* writable by group or others \(mode 0777\)"):
        assert compile_and_load(src, [], FLAGS, symbols=["kern"]).kern() == 42
    assert not marker.exists()


@needs_cc
def test_a_symbolic_link_to_another_users_folder_is_refused(src, folders, tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, OTHER_UID, OTHER_UID)
    folders[0].parent.mkdir(parents=True)
    folders[0].symlink_to(theirs)
    with pytest.warns(RuntimeWarning, match=rf"owned by uid {OTHER_UID}"):
        assert compile_and_load(src, [], FLAGS, symbols=["kern"]).kern() == 42
    assert not any(theirs.iterdir())


@needs_cc
def test_when_every_folder_is_refused_the_error_lists_them_and_fused_falls_back(src, folders, monkeypatch):
    for f in folders:
        f.mkdir(parents=True)
        os.chown(f, OTHER_UID, OTHER_UID)
    with pytest.warns(RuntimeWarning), pytest.raises(OSError, match="no usable cache folder.*first.*second.*third"):
        compile_and_load(src, [], FLAGS, symbols=["kern"])


# ---------------------------------------------------------------------------
# Item 3: a bad cache entry is rebuilt once, never loaded as is
# ---------------------------------------------------------------------------
_CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from normlib import kernel_cache
    folder = Path(sys.argv[1])
    kernel_cache._cache_dirs = lambda: [folder]
    lib = kernel_cache.compile_and_load(Path(sys.argv[2]), [], ["-shared", "-fPIC"], symbols=["kern"])
    print(lib.kern())
""")


@needs_cc
def test_a_truncated_library_in_the_cache_is_rebuilt_instead_of_killing_the_process(src, folders, tmp_path):
    good = _cc(src, tmp_path / "good.so").read_bytes()
    # a library with a large data segment, cut in the middle: the loader would touch pages past the end
    big = tmp_path / "big.c"
    big.write_text(KERNEL + "static double table[200000] = {1};\ndouble at(int i) { return table[i]; }\n")
    cut = _cc(big, tmp_path / "big.so").read_bytes()
    cut = cut[: len(cut) // 2]
    # first show that loading the cut file directly is the bus error the cache guards against
    crash = subprocess.run([sys.executable, "-c", "import ctypes, sys; ctypes.CDLL(sys.argv[1])",
                            str(_plant(tmp_path, "cut.so", cut))], capture_output=True, timeout=60)
    assert crash.returncode != 0
    entry = _plant(folders[0], library_name(src, [], FLAGS), cut)
    # the load runs in a child process, so that a regression kills the child and not the test suite
    run = subprocess.run([sys.executable, "-c", _CHILD, str(folders[0]), str(src)],
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
    assert run.returncode == 0, (run.returncode, run.stderr)
    assert run.stdout.split() == ["42"]
    assert entry.read_bytes() == good or len(entry.read_bytes()) != len(cut)  # replaced by a fresh build
    assert _no_temporaries(folders[0])


@pytest.mark.parametrize("content", [b"", b"garbage, not a library\n" * 10, b"\x7fELF" + b"\0" * 60],
                         ids=["empty", "garbage", "elf-header-only"])
@needs_cc
def test_an_empty_or_garbage_entry_is_rebuilt(src, folders, content):
    entry = _plant(folders[0], library_name(src, [], FLAGS), content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a repaired entry is not worth a warning
        assert compile_and_load(src, [], FLAGS, symbols=["kern"]).kern() == 42
    assert entry.read_bytes()[:4] == b"\x7fELF" and len(entry.read_bytes()) > 1000


@needs_cc
def test_a_valid_library_without_the_kernel_symbols_is_rebuilt(src, folders, tmp_path):
    other = tmp_path / "other.c"
    other.write_text(OTHER)
    entry = _plant(folders[0], library_name(src, [], FLAGS), _cc(other, tmp_path / "other.so").read_bytes())
    lib = compile_and_load(src, [], FLAGS, symbols=["kern"])
    assert lib.kern() == 42
    assert compile_and_load(src, [], FLAGS, symbols=["kern"]).kern() == 42
    assert b"something_else" not in entry.read_bytes()


@needs_cc
def test_a_compiler_that_writes_nothing_leaves_nothing_in_the_cache(src, folders, monkeypatch):
    monkeypatch.setenv("CC", "true")  # exits 0 and leaves the empty temporary file
    with pytest.raises(KernelBuildError, match=r"is not an ELF shared object \(0 bytes\)"):
        compile_and_load(src, [], FLAGS, symbols=["kern"])
    assert not (folders[0] / library_name(src, [], FLAGS)).exists() and _no_temporaries(folders[0])
    monkeypatch.delenv("CC")
    assert compile_and_load(src, [], FLAGS, symbols=["kern"]).kern() == 42  # nothing stale stands in the way


@needs_cc
def test_a_build_without_the_symbols_is_not_kept(src, folders, tmp_path):
    src.write_text(OTHER)
    with pytest.raises(KernelBuildError, match="lacks the symbols kern"):
        compile_and_load(src, [], FLAGS, symbols=["kern"])
    assert not (folders[0] / library_name(src, [], FLAGS)).exists() and _no_temporaries(folders[0])


@needs_cc
def test_a_bad_entry_whose_rebuild_fails_raises_once_with_both_reasons(src, folders, monkeypatch):
    monkeypatch.setenv("CC", "true")  # the name depends on $CC: plant under the name CC=true looks for
    _plant(folders[0], library_name(src, [], FLAGS), b"garbage")
    with pytest.raises(KernelBuildError, match=r"the cached .* is not an ELF .*and the rebuild failed: .*0 bytes"):
        compile_and_load(src, [], FLAGS, symbols=["kern"])


@needs_cc
def test_a_failing_compiler_raises_with_its_message(src, folders):
    src.write_text("this is not C\n")
    with pytest.raises(KernelBuildError, match="failed: .*error"):
        compile_and_load(src, [], FLAGS, symbols=["kern"])
    assert _no_temporaries(folders[0])


# ---------------------------------------------------------------------------
# Item 4: any OSError moves to the next folder; CC with arguments
# ---------------------------------------------------------------------------
@needs_cc
def test_a_path_that_is_a_file_moves_to_the_next_folder(src, folders):
    folders[0].parent.mkdir(parents=True)
    folders[0].write_text("not a folder")
    assert compile_and_load(src, [], FLAGS, symbols=["kern"]).kern() == 42
    assert (folders[1] / library_name(src, [], FLAGS)).exists()


@needs_cc
def test_a_parent_that_is_a_file_moves_to_the_next_folder(src, folders):
    folders[0].parent.write_text("a file where the parent folder should be")
    assert compile_and_load(src, [], FLAGS, symbols=["kern"]).kern() == 42
    assert (folders[1] / library_name(src, [], FLAGS)).exists()


@needs_cc
def test_a_missing_folder_behind_a_dangling_link_moves_to_the_next_folder(src, folders, tmp_path):
    folders[0].parent.symlink_to(tmp_path / "gone" / "away")  # the folder it names does not exist
    assert compile_and_load(src, [], FLAGS, symbols=["kern"]).kern() == 42
    assert (folders[1] / library_name(src, [], FLAGS)).exists()


@needs_cc
def test_a_read_only_file_system_moves_to_the_next_folder(src, folders, monkeypatch):
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kw):  # noqa: A002 - tempfile's own name
        if str(dir).startswith(str(folders[0])):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(kernel_cache.tempfile, "mkstemp", mkstemp)
    assert compile_and_load(src, [], FLAGS, symbols=["kern"]).kern() == 42
    assert (folders[1] / library_name(src, [], FLAGS)).exists()


def test_no_usable_folder_at_all_raises_oserror_naming_each(src, folders):
    for f in folders:
        f.parent.parent.mkdir(parents=True, exist_ok=True)
        f.parent.write_text("file")
    with pytest.raises(OSError, match="no usable cache folder.*first/normlib.*second/normlib.*third/normlib"):
        compile_and_load(src, [], FLAGS, symbols=["kern"])


@pytest.mark.parametrize("cc, words", [
    ("", ["cc"]),
    ("gcc", ["gcc"]),
    ("gcc -O0", ["gcc", "-O0"]),
    ("  gcc   -O0 -g ", ["gcc", "-O0", "-g"]),
    ('"/opt/my tools/gcc" -O0', ["/opt/my tools/gcc", "-O0"]),
])
def test_cc_is_split_like_make_and_the_shell_split_it(monkeypatch, cc, words):
    monkeypatch.setenv("CC", cc)
    assert kernel_cache.compiler() == words


@needs_cc
def test_cc_with_arguments_builds(src, folders, monkeypatch):
    monkeypatch.setenv("CC", f"{kernel_cache.compiler()[0]} -O0 -DKERN_VALUE=43")
    src.write_text("int kern(void) { return KERN_VALUE; }\n")
    assert compile_and_load(src, [], FLAGS, symbols=["kern"]).kern() == 43


# ---------------------------------------------------------------------------
# normlib.fused on top of the cache: never crashes, falls back with one warning
# ---------------------------------------------------------------------------
@pytest.fixture
def fresh_fused(monkeypatch, tmp_path):
    """A fresh load of the fused kernels in this process, into a temporary cache (restored after)."""
    monkeypatch.setattr(fused, "_lib", None)
    monkeypatch.setattr(fused, "status", "not loaded yet")
    monkeypatch.setattr(kernel_cache, "_cache_dirs", lambda: [tmp_path / "cache" / "normlib"])
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("NORMLIB_FUSED", raising=False)
    return tmp_path / "cache" / "normlib"


def _fused_name() -> str:
    return library_name(fused._SOURCE, [fused._HEADER], fused._FLAGS)


def _layer_norm_matches_torch() -> bool:
    x = torch.randn(6, 10, generator=torch.Generator().manual_seed(0))
    return torch.allclose(NF.layer_norm(x, (10,)), torch.nn.functional.layer_norm(x, (10,)), rtol=1e-5, atol=1e-5)


def test_a_missing_compiler_turns_the_kernels_off_with_one_warning(fresh_fused, monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert fused.available() is False
        assert fused.available() is False  # decided once per process
    assert [str(w.message) for w in seen if w.category is RuntimeWarning] == [
        f"normlib.fused: {fused.status}; using the slower whole-tensor path"]
    assert fused.status.startswith("off: could not build fused.c: cannot run the C compiler")
    x = torch.randn(6, 10)
    assert fused.layout(x, (1,)) is None and _layer_norm_matches_torch()


@needs_cc
def test_a_symbol_less_cached_library_is_rebuilt_and_the_kernels_run(fresh_fused, tmp_path):
    other = tmp_path / "other.c"
    other.write_text(OTHER)
    _plant(fresh_fused, _fused_name(), _cc(other, tmp_path / "other.so").read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fused.available() is True
    assert fused.status == "on" and fused.layout(torch.randn(6, 10), (1,)) is not None
    assert _layer_norm_matches_torch()


def test_a_garbage_entry_and_a_compiler_that_writes_nothing_fall_back_with_one_warning(fresh_fused, monkeypatch):
    monkeypatch.setenv("CC", "true")
    _plant(fresh_fused, _fused_name(), b"garbage")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert fused.available() is False
    assert len([w for w in seen if w.category is RuntimeWarning]) == 1
    assert "and the rebuild failed" in fused.status
    assert _layer_norm_matches_torch()


def test_an_unusable_cache_falls_back_with_warnings_and_no_exception(fresh_fused):
    fresh_fused.parent.mkdir(parents=True)
    fresh_fused.write_text("a file in the way")
    with pytest.warns(RuntimeWarning, match="no usable cache folder"):
        assert fused.available() is False
    assert _layer_norm_matches_torch()


@needs_cc
@pytest.mark.skipif(os.environ.get("NORMLIB_FUSED") == "0", reason="kernels switched off")
def test_the_kernels_are_back_after_the_fallback_tests():
    assert fused.available() and fused.status == "on" and fused.layout(torch.randn(6, 10), (1,)) is not None
