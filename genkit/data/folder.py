"""``folder:PATH``: a folder of images, listed (never decoded) at start.

Layouts, as in Hugging Face ``imagefolder``:

- ``PATH/*.png``: unlabelled images.
- ``PATH/<class>/**/*.png`` with two or more class folders: labelled; the class names
  are the folder names, sorted. Images directly in ``PATH`` beside class folders are
  refused (one line naming them): genkit would have to guess their class.
- ``PATH/metadata.jsonl`` (or ``metadata.csv``) with a ``file_name`` column (paths
  relative to ``PATH``): exactly the listed images, captions from ``text`` (or
  ``--set caption_column=``) and labels only from ``--set label_column=``.

Hidden files and folders are ignored, and so is anything that is not an image by suffix.
Listing reads directories only (no file is opened or stat'ed, except with a metadata
file or ``--set cache=true``). Files that turn out empty, corrupt, truncated or
decompression bombs are skipped when first decoded (empty ones already at listing when
genkit stats the files). Either way the skip prints one line,
``Warning: skipped PATH: REASON``, once per run (:func:`genkit.data.decode.warn_skipped`),
and the run goes on with the other images.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from genkit.data.decode import IMAGE_SUFFIXES, warn_skipped
from genkit.data.lazy import FileReader, LazyImageData
from genkit.data.types import DataOptions
from genkit.errors import DataError

METADATA_FILES = ("metadata.jsonl", "metadata.csv")
CAPTION_COLUMNS = ("text", "caption")


def list_folder(argument: str | None, opts: DataOptions) -> LazyImageData:
    """All images of ``folder:argument`` (every split), lazily."""
    if not argument:
        raise DataError("folder source needs a path: 'folder:PATH'")
    root = Path(argument).expanduser()
    if not root.exists():
        raise DataError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder (folder:PATH takes a folder of images)")
    metadata = [root / name for name in METADATA_FILES if (root / name).is_file()]
    if len(metadata) > 1:
        raise DataError(f"image folder {root} has both metadata.jsonl and metadata.csv; keep one")
    name = f"folder:{argument}"
    if metadata:
        return _from_metadata(root, metadata[0], opts, name)
    if opts.label_column or opts.caption_column:
        raise DataError(f"label_column and caption_column need {root}/metadata.jsonl "
                        "(or metadata.csv); without it, class sub-folders are the labels")
    files, stamps = _walk(root, opts.cache)
    if not files:
        raise DataError(f"image folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    top = [rel for rel in files if "/" not in rel]
    classes = sorted({rel.split("/", 1)[0] for rel in files if "/" in rel})
    if top and classes:
        shown = ", ".join(top[:3]) + (f" and {len(top) - 3} more" if len(top) > 3 else "")
        raise DataError(f"image folder {root} has images beside its class sub-folders ({shown}); "
                        "move them into a class folder or out of the folder")
    labels, class_names = None, None
    if len(classes) > 1:
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[rel.split("/", 1)[0]] for rel in files], dtype=np.int64)
        class_names = classes
    reader = FileReader(str(root), files, stamps)
    return LazyImageData(reader, labels, len(class_names or ()), class_names, name,
                         size=opts.size, cache=opts.cache)


def _walk(root: Path, stamps: bool) -> tuple[list[str], list[tuple[int, int]] | None]:
    """Sorted relative posix paths of the image files under ``root`` (symlinked folders
    followed once), with ``(bytes, mtime_ns)`` each when ``stamps`` (the decoded cache's
    key; zero-byte files are then reported and left out here). Without ``stamps`` no
    file is stat'ed: listing a million files costs a directory read."""
    found: list[Any] = []  # paths, or (path, stamp) pairs with ``stamps``
    seen: set[tuple[int, int]] = set()
    stack = [(str(root), "")]
    while stack:
        directory, prefix = stack.pop()
        info = os.stat(directory)
        if (info.st_dev, info.st_ino) in seen:  # a symlink loop
            continue
        seen.add((info.st_dev, info.st_ino))
        try:
            entries = os.scandir(directory)
        except OSError as exc:
            raise DataError(f"cannot read {directory}: {exc.strerror or exc}") from None
        with entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                if entry.is_dir():
                    stack.append((entry.path, prefix + name + "/"))
                elif name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file():
                    if not stamps:
                        found.append(prefix + name)
                        continue
                    stat = entry.stat()
                    if stat.st_size == 0:
                        warn_skipped(entry.path, "empty file (0 bytes)")
                        continue
                    found.append((prefix + name, (stat.st_size, stat.st_mtime_ns)))
    found.sort()
    if not stamps:
        return found, None
    return [rel for rel, _ in found], [stamp for _, stamp in found]


def _from_metadata(root: Path, path: Path, opts: DataOptions, name: str) -> LazyImageData:
    rows = _read_metadata(path)
    if not rows:
        raise DataError(f"{path} lists no images")
    columns = list(rows[0])
    if "file_name" not in columns:
        raise DataError(f"{path} has no file_name column; columns: {', '.join(columns)}")
    caption = opts.caption_column or next((c for c in CAPTION_COLUMNS if c in columns), None)
    for what, column in (("caption_column", opts.caption_column),
                         ("label_column", opts.label_column)):
        if column and column not in columns:
            raise DataError(f"column {column!r} not in {path.name}; columns: "
                            f"{', '.join(columns)} (choose with --set {what}=NAME)")
    kept, stamps, resolved_root = [], [], root.resolve()
    for line, row in enumerate(rows, start=1):
        rel = str(row.get("file_name") or "")
        file = (root / rel)
        where = f"{path.name} row {line}"
        if not rel or not file.resolve().is_relative_to(resolved_root):
            raise DataError(f"{where}: file_name {rel!r} is not a path inside {root}")
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"{where}: {rel!r} is not an image ({', '.join(IMAGE_SUFFIXES)})")
        try:
            stat = file.stat()
        except OSError:
            raise DataError(f"{where}: {rel!r} does not exist") from None
        if stat.st_size == 0:
            warn_skipped(str(file), "empty file (0 bytes)")
            continue
        kept.append(row)
        stamps.append((stat.st_size, stat.st_mtime_ns))
    if not kept:
        raise DataError(f"image folder {root} holds no readable images")
    reader = FileReader(str(root), [str(r["file_name"]) for r in kept], stamps)
    captions = [str(r.get(caption) or "") for r in kept] if caption else None
    labels, class_names = None, None
    if opts.label_column:
        labels, class_names = class_labels([r.get(opts.label_column) for r in kept])
    return LazyImageData(reader, labels, len(class_names or ()), class_names, name, captions,
                         opts.size, cache=opts.cache)


def _read_metadata(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if path.suffix == ".csv":
        try:
            return list(csv.DictReader(text.splitlines()))
        except csv.Error as exc:
            raise DataError(f"{path} is not valid CSV: {exc}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {number} is not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path} line {number} is not a JSON object")
        rows.append(row)
    return rows


def class_labels(values: list[Any]) -> tuple[np.ndarray, list[str]]:
    """Integer labels and sorted class names from raw label values (numbers sort as
    numbers); an empty or missing value is an error naming the row."""
    for row, value in enumerate(values, start=1):
        if value is None or value == "":
            raise DataError(f"row {row} has no label")
    numeric = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    names = sorted(set(values)) if numeric else sorted({str(v) for v in values})
    index = {name: i for i, name in enumerate(names)}
    labels = np.array([index[v if numeric else str(v)] for v in values], dtype=np.int64)
    return labels, [str(n) for n in names]
