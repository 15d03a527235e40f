"""Files that are never half-written: atomic writes, durable directories, content hashes.

Every file genkit writes goes to a temporary sibling first and is renamed into place, so
a crash or a ``kill -9`` at any moment leaves either the old file or the new one. The
temporary names all start with ``.`` and contain ``.tmp-``, so a later run can tell its
own leftovers from a user's files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from genkit.errors import FolderBusyError

TMP_MARK = ".tmp-"


def temp_sibling(path: Path, kind: str = "tmp") -> Path:
    """A fresh hidden name beside ``path`` (``.NAME.tmp-1a2b3c4d``)."""
    return path.parent / f".{path.name}.{kind}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on success it replaces ``path`` in one rename.

    On any error the temporary directory is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        if path.exists():
            old = temp_sibling(path, "old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fsync_tree(root: Path) -> None:
    """Flush every file to disk and give it the usual permissions (safetensors writes 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    for file in root.rglob("*"):
        if file.is_file():
            os.chmod(file, 0o666 & ~umask)
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
        elif file.is_dir():
            os.chmod(file, 0o777 & ~umask)
    os.chmod(root, 0o777 & ~umask)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = temp_sibling(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


LOCK_FILE = ".genkit.lock"


@contextlib.contextmanager
def folder_lock(folder: Path, what: str, shared: bool = False,
                name: str = LOCK_FILE) -> Iterator[None]:
    """Hold ``folder``'s genkit lock for the block: exclusive (one process owns the folder)
    or shared (several shards of one run). A process that cannot get it fails at once with
    a one-line :class:`~genkit.errors.FolderBusyError` naming the holder. The lock file
    stays (removing it would race with the next holder); the OS frees the lock when the
    process ends, however it ends.
    """
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform: go on unlocked
        yield
        return
    path = Path(folder) / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            raise FolderBusyError(f"{folder} is in use by {holder}; wait for it to finish or "
                                  f"choose another {what}") from None
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, _holder_line().encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder_line() -> str:
    import sys

    command = " ".join(["genkit", *sys.argv[1:]])[:200] if sys.argv else "genkit"
    return f"pid {os.getpid()} ({command})"


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove the temporary files and directories a killed genkit process left in
    ``folder`` (``.NAME.tmp-XXXXXXXX`` and ``.NAME.old-XXXXXXXX``); call it only while
    holding the folder's lock. Returns what was removed."""
    removed = []
    for stale in Path(folder).glob(".*"):
        head, sep, tag = stale.name.rpartition(".")
        if sep and (tag.startswith("tmp-") or tag.startswith("old-")) and len(tag) == 12:
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed
