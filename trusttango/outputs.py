"""One output policy for every command: nothing already written is lost.

:func:`check_output` runs before any long work and refuses, in one line: an existing
non-empty output without ``force``; a file where a folder is expected or the reverse; an
output that is (or holds, or lies inside) one of the command's inputs, compared by resolved
path and by inode; a location that cannot be written. :func:`atomic_output` then yields a
fresh temporary sibling to write into and, only when the block ends without error, puts it
in the output's place: an interrupted or failed run leaves the previous output as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from trusttango.errors import InputError, require

Kind = Literal["dir", "file"]


def _related(out: Path, source: Path) -> bool:
    """Whether ``out`` is ``source`` (same inode too), or one lies inside the other."""
    a, b = out.resolve(), source.resolve()
    if a == b or a in b.parents or b in a.parents:
        return True
    return out.exists() and source.exists() and os.path.samefile(out, source)


def _writable_ancestor(out: Path) -> Path:
    """The nearest existing folder above ``out``, which must be a writable folder."""
    ancestor = out.resolve().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    require(ancestor.is_dir(), f"{out}: cannot be written: {ancestor} is a file, not a folder")
    require(os.access(ancestor, os.W_OK | os.X_OK), f"{out}: cannot be written: {ancestor} is not writable")
    return ancestor


def check_output(out: Path, force: bool, inputs: Iterable[Path | str | None] = (), kind: Kind = "dir") -> Path:
    """Refuse ``out`` (a folder, or a file for ``kind="file"``) before any work, in one line
    naming what is wrong; returns it. ``inputs``: the paths the command reads (None, empty
    strings and names that are not paths, such as a built-in dataset, are skipped)."""
    out = Path(out)
    for source in inputs:
        if source and Path(source).exists():  # None, "" (not given) and built-in names are not paths
            require(not _related(out, Path(source)), f"--out {out}: it is (or holds) the input {source}; write "
                    "elsewhere")  # fmt: skip
    if kind == "dir":
        require(not out.is_file(), f"--out {out}: is a file; expected a folder")
        require(not (out.is_dir() and any(out.iterdir())) or force,
                f"--out {out}: exists and is not empty; pass --force to replace it")  # fmt: skip
    else:
        require(not out.is_dir(), f"--out {out}: is a folder; expected a file")
        require(not out.exists() or force, f"--out {out}: exists; pass --force to replace it")
    _writable_ancestor(out)
    return out


@contextmanager
def atomic_output(out: Path, kind: Kind = "dir") -> Iterator[Path]:
    """A temporary sibling of ``out`` to write into; when the block succeeds it replaces
    ``out`` (the old output is removed only then); when it fails, it is removed and ``out``
    stays as it was."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "dir":
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    else:
        handle, name = tempfile.mkstemp(prefix=f".{out.name}.partial-", suffix=out.suffix, dir=out.parent)
        os.close(handle)
        staging = Path(name)
    try:
        yield staging
        _replace(staging, out, kind)
    except BaseException:
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.unlink(missing_ok=True)
        raise


def _replace(staging: Path, out: Path, kind: Kind) -> None:
    """Put ``staging`` where ``out`` is: a file by one atomic rename; a folder by moving the old
    one aside first, so that ``out`` is the old or the new folder at every moment but one rename."""
    if kind == "file" or not out.exists():
        os.replace(staging, out)
        return
    if not out.is_dir():
        raise InputError(f"--out {out}: is a file; expected a folder")
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old.rmdir()
    out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def set_aside(out: Path) -> Iterator[Path]:
    """For an output that must be written in its final place (a study a killed run resumes
    from): an existing ``out`` is moved to a hidden sibling first; it is put back when the block
    fails, and deleted only once the block succeeds. A killed run leaves both, nothing lost."""
    out = Path(out)
    if not out.exists():
        yield out
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.replaced-", dir=out.parent))
    old.rmdir()
    out.rename(old)
    try:
        yield out
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)
