"""``hf:`` sources through Hugging Face ``datasets.load_dataset``.

``hf:ARG`` is, in this order:

- a ``save_to_disk`` folder (``load_from_disk``);
- any other local folder (``imagefolder`` with ``metadata.jsonl``, or data files);
- a local ``.parquet``, ``.arrow``, ``.csv``, ``.json`` or ``.jsonl`` file;
- a Hub id (``ORG/NAME``), read from the Hugging Face cache when it is there; with
  ``HF_HUB_OFFLINE=1`` only from the cache, and one line saying so when it is not.

The data set's own splits are kept: genkit's ``train`` is the ``train`` split (or
``--set split=NAME``), its ``test`` the ``test`` (else ``validation``) split. Only a set
without a held-out split is divided, 80/20 with a fixed seed. Columns: the image column
is the first ``Image`` feature (``--set image_column=``), labels the first ``ClassLabel``
(``--set label_column=``; its names become the class names), captions ``text`` or
``caption`` (``--set caption_column=``). A set without an image column but with a text
column is text (for the text families). ``--set streaming=true`` streams instead of
preparing an Arrow copy (:mod:`genkit.data.stream`).

Without streaming, ``datasets`` prepares an Arrow copy of local files and Hub snapshots
once, in its own cache (``HF_DATASETS_CACHE``); rows are then read, and images decoded,
one batch at a time in the DataLoader workers, as for ``folder:``. For a large folder of
image files, ``folder:PATH`` skips that copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from genkit.data.columns import find_columns, label_values
from genkit.data.lazy import DatasetReader, LazyImageData
from genkit.data.types import DataOptions, TextData
from genkit.errors import DataError

TEST_SPLITS = ("test", "validation", "valid", "val")
TEST_FRACTION = 0.2
FILE_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".json": "json",
                 ".jsonl": "json"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_TRUE = ("1", "true", "yes", "on")


def load_hf(argument: str | None, split: str, opts: DataOptions) -> Any:
    """``hf:argument``'s ``split`` (train, test or all) as lazy image data or text."""
    if not argument:
        raise DataError("hf source needs a path or a Hub id: 'hf:PATH' or 'hf:ORG/NAME'")
    try:
        import datasets
    except ImportError:
        raise DataError("the hf source needs the datasets package: "
                        "pip install 'genkit[datasets]'") from None
    name = f"hf:{argument}"
    with quiet(datasets):
        splits = open_splits(argument, opts, datasets)
        part = choose_split(splits, split, opts, name, datasets)
    if opts.streaming:
        from genkit.data.stream import streaming_data  # lazy: only streams need it

        if isinstance(part, datasets.Dataset):  # save_to_disk: streamed, its length known
            return streaming_data(part.to_iterable_dataset(), opts, name, len(part))
        return streaming_data(part, opts, name)
    return from_dataset(part, opts, name, split)


@contextlib.contextmanager
def quiet(datasets: Any) -> Iterator[None]:
    """No progress bars or info logs from ``datasets`` (they would be stray stderr lines)."""
    bars_were_off = datasets.utils.are_progress_bars_disabled()
    level = datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # errors: ours, one line
    try:
        yield
    finally:
        datasets.logging.set_verbosity(level)
        if not bars_were_off:
            datasets.enable_progress_bars()


def open_splits(argument: str, opts: DataOptions, datasets: Any) -> dict[str, Any]:
    """The data set's splits by name (``Dataset`` or ``IterableDataset`` each)."""
    path = Path(argument).expanduser()
    kwargs: dict[str, Any] = {"streaming": opts.streaming}
    try:
        if path.is_dir() and ((path / "dataset_dict.json").is_file()
                              or (path / "state.json").is_file()):
            if _saved_empty(path):
                raise DataError(f"hf:{argument} is empty (a save_to_disk folder without rows)")
            loaded = datasets.load_from_disk(str(path))  # streamed after the split is chosen
        elif path.is_dir():
            loaded = datasets.load_dataset(str(path), name=opts.config, **kwargs)
        elif path.is_file():
            builder = FILE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise DataError(f"{path}: expected a data set folder or a "
                                f"{', '.join(FILE_BUILDERS)} file")
            loaded = datasets.load_dataset(builder, data_files=str(path), **kwargs)
        else:
            loaded = _load_hub(argument, opts, datasets)
    except DataError:
        raise
    except Exception as exc:  # datasets and pyarrow raise many kinds on bad input
        if "corresponds to no data" in str(exc):  # a split of zero rows
            raise DataError(f"hf:{argument} is empty") from None
        detail = " ".join(str(exc).split()[:40]) or type(exc).__name__
        raise DataError(f"hf:{argument} is not a data set genkit can read "
                        f"({type(exc).__name__}: {detail})") from None
    if isinstance(loaded, (datasets.Dataset, datasets.IterableDataset)):
        return {"train": loaded}
    return dict(loaded)


def _saved_empty(path: Path) -> bool:
    """A ``save_to_disk`` folder whose every split has no data file (``datasets`` fails
    on it with an IndexError)."""
    states = [path / "state.json"] if (path / "state.json").is_file() else \
        sorted(path.glob("*/state.json"))
    try:
        return bool(states) and all(
            not json.loads(s.read_text(encoding="utf-8")).get("_data_files") for s in states)
    except (OSError, ValueError, AttributeError):
        return False


def hub_cache() -> str | None:
    """The Hugging Face hub cache as the environment names it now (not at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def _load_hub(repo_id: str, opts: DataOptions, datasets: Any) -> Any:
    """A Hub id: its cached snapshot when there is one, else (online) ``load_dataset``."""
    if not _REPO_ID.match(repo_id) or ".." in repo_id or "--" in repo_id \
            or Path(repo_id).suffix.lower() in FILE_BUILDERS:
        raise DataError(f"dataset path {repo_id} does not exist")
    from huggingface_hub import snapshot_download

    try:
        snapshot = snapshot_download(repo_id, repo_type="dataset", revision=opts.revision,
                                     cache_dir=hub_cache(), local_files_only=True)
    except Exception:  # LocalEntryNotFoundError, or a damaged cache entry
        snapshot = None
    if snapshot is not None:
        return datasets.load_dataset(snapshot, name=opts.config, streaming=opts.streaming)
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE \
            or os.environ.get("HF_DATASETS_OFFLINE", "").lower() in _TRUE:
        raise DataError(f"hf:{repo_id} is neither a local path nor a data set in the Hugging "
                        f"Face cache, and HF_HUB_OFFLINE=1; download it first (hf download "
                        f"--repo-type dataset {repo_id}) or unset HF_HUB_OFFLINE")
    return datasets.load_dataset(repo_id, name=opts.config, revision=opts.revision,
                                 streaming=opts.streaming)


def choose_split(splits: dict[str, Any], role: str, opts: DataOptions, name: str,
                 datasets: Any) -> Any:
    """genkit's ``role`` (train, test, all) from the data set's own splits; a set with
    no held-out split is divided 80/20 with a fixed seed."""
    names = list(splits)
    if opts.split is not None and opts.split not in splits:
        raise DataError(f"unknown split {opts.split!r} in {name}; it has {', '.join(names)} "
                        "(choose with --set split=NAME)")
    train = opts.split or ("train" if "train" in splits else names[0] if len(names) == 1
                           else None)
    if train is None:
        raise DataError(f"{name} has the splits {', '.join(names)} and none is called train; "
                        "choose one with --set split=NAME")
    test = next((s for s in TEST_SPLITS if s in splits and s != train), None)
    if role == "all":
        parts = [splits[train]] + ([splits[test]] if test else [])
        return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    if test is not None:
        return splits[train if role == "train" else test]
    return held_out_part(splits[train], role)


def held_out_part(ds: Any, role: str) -> Any:
    """The fixed, seeded 80/20 division of a split without a held-out partner."""
    if not hasattr(ds, "select"):  # a stream: every fifth example (hash of its position)
        keep_test = role == "test"
        return ds.filter(lambda _, i: (i * 2654435761 % 2**32) % 5 == 0 if keep_test
                         else (i * 2654435761 % 2**32) % 5 != 0, with_indices=True)
    n = len(ds)
    order = np.random.default_rng(0).permutation(n)
    n_test = max(1, round(n * TEST_FRACTION)) if n > 1 else 0
    rows = order[:n_test] if role == "test" else order[n_test:]
    return ds.select(np.sort(rows).tolist())


def from_dataset(ds: Any, opts: DataOptions, name: str, split: str) -> Any:
    """A prepared ``Dataset`` as :class:`LazyImageData` (or :class:`TextData`)."""
    import datasets

    if len(ds) == 0:
        raise DataError(f"{name} ({split} split) is empty")
    image, text, label, caption = find_columns(ds.features, list(ds.column_names), opts, datasets)
    if image is None:
        if text is None:
            raise DataError(f"{name} has no image or text column; columns: "
                            f"{', '.join(ds.column_names)} (choose with --set image_column=NAME)")
        return TextData("\n\n".join(str(t) for t in ds[text]), name)
    labels, num_classes, class_names = (None, 0, None) if label is None else label_values(
        ds, label, ds.features.get(label), datasets)
    captions = [str(c) for c in ds[caption]] if caption else None
    return LazyImageData(DatasetReader(ds, image, name), labels, num_classes, class_names, name,
                         captions, opts.size, cache=opts.cache)
