"""The optional decoded cache: a lazy image set's decoded rows in a memory-mapped ``.npy``.

Decoding a PNG or JPEG costs far more than reading its decoded pixels, so with
``--set cache=true`` every row a DataLoader worker decodes is also written into
``<genkit cache>/images/<key>.npy`` (uint8 ``(N, S, S, C)`` at the model's format), and
later epochs and runs read it instead. The key is a hash of the file list, their sizes
and mtimes, and the format: change a file and its set gets a new cache.

The cache fills as training reads it (no whole-set decode before step 1), from several
worker processes at once: each row has a CRC32 (stored + 1, so 0 means "not there") in a
sibling ``.crc.npy`` written after the row, and a row is used only when its CRC matches,
so a row torn by a crash or a second writer is decoded again rather than trusted.
Rows are deterministic, so two writers write the same bytes. Meant for sets whose
decoded size fits comfortably on disk and in the page cache; the size is checked
against free disk space when the cache is created.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from genkit.errors import DataError
from genkit.fs import temp_sibling
from genkit.paths import cache_dir

CACHE_VERSION = 1


class DecodedCache:
    """Rows of one lazy image set at one format; open in each process on first use."""

    def __init__(self, fingerprint: bytes, n: int, size: int, channels: int) -> None:
        digest = hashlib.sha256(fingerprint)
        digest.update(f"v{CACHE_VERSION}:{n}:{size}:{channels}".encode())
        self.shape = (n, size, size, channels)
        folder = cache_dir() / "images"
        stem = f"{digest.hexdigest()[:24]}-{n}x{size}x{size}x{channels}"
        self.path, self.crc_path = folder / f"{stem}.npy", folder / f"{stem}.crc.npy"
        self._rows: Any = None
        self._crcs: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_rows": None, "_crcs": None}  # workers map it themselves

    def create(self) -> None:
        """Make the (sparse) files if they are missing or of another shape; a DataError
        when the decoded set would not fit on the disk or the folder is not writable."""
        if self._matches():
            return
        need = int(np.prod(self.shape)) + self.shape[0] * 8
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.path.parent).free
            if need > free // 2:
                raise DataError(f"the decoded cache would take {need / 2**30:.1f} GiB and "
                                f"{self.path.parent} has {free / 2**30:.1f} GiB free; drop "
                                "--set cache=true or set GENKIT_CACHE to a larger disk")
            for path, shape, dtype in ((self.crc_path, self.shape[:1], np.uint64),
                                       (self.path, self.shape, np.uint8)):
                tmp = temp_sibling(path)
                try:
                    np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape).flush()
                    os.replace(tmp, path)
                finally:
                    with contextlib.suppress(OSError):
                        tmp.unlink()
        except OSError as exc:
            raise DataError(f"cannot write the decoded cache in {self.path.parent}: "
                            f"{exc.strerror or exc}; drop --set cache=true or set "
                            "GENKIT_CACHE") from None

    def _matches(self) -> bool:
        try:
            rows = np.load(self.path, mmap_mode="r")
            crcs = np.load(self.crc_path, mmap_mode="r")
        except (OSError, ValueError):
            return False
        return rows.shape == self.shape and rows.dtype == np.uint8 and crcs.shape == self.shape[:1]

    def _open(self) -> bool:
        if self._rows is None:
            try:
                self._rows = np.load(self.path, mmap_mode="r+")
                self._crcs = np.load(self.crc_path, mmap_mode="r+")
            except (OSError, ValueError):
                return False
            if self._rows.shape != self.shape or self._crcs.shape != self.shape[:1]:
                self._rows = self._crcs = None
                return False
        return True

    def get(self, index: int) -> np.ndarray | None:
        """Row ``index`` when it is cached and intact, else None."""
        if not self._open():
            return None
        stored = int(self._crcs[index])
        if stored == 0:
            return None
        row = np.array(self._rows[index])
        return row if zlib.crc32(row.tobytes()) + 1 == stored else None

    def put(self, index: int, row: np.ndarray) -> None:
        """Store row ``index`` (the row first, then its CRC)."""
        if self._open():
            self._rows[index] = row
            self._crcs[index] = zlib.crc32(np.ascontiguousarray(row).tobytes()) + 1

    @property
    def location(self) -> Path:
        return self.path
