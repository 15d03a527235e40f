"""Loading a data source by its spec, through the sources plugins (and genkit) register."""

from __future__ import annotations

from typing import Any

from genkit.data.types import ImageData, TextData, normalise_split, parse_source
from genkit.discovery.registry import get_registry
from genkit.errors import DataError, GenkitError


def load_data(source: Any, split: str = "train", **options: Any) -> ImageData | TextData:
    """Load ``source`` (a spec string, or already-loaded data which is returned as is)."""
    if isinstance(source, (ImageData, TextData)):
        return source
    if not isinstance(source, str) or not source.strip():
        raise DataError("a data source is a string such as 'digits', 'folder:PATH', "
                        "'text:PATH' or 'pydoc'")
    scheme, argument = parse_source(source)
    spec = get_registry().data_source(scheme)
    try:
        data = spec.load(argument, split=normalise_split(split), **options)
    except GenkitError:
        raise
    except Exception as exc:  # a plugin's loader must not end the command with a traceback
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise DataError(f"data source {source!r} ({spec.plugin}) failed: {detail}") from exc
    if not isinstance(data, (ImageData, TextData)):
        raise DataError(f"data source {source!r} ({spec.plugin}) returned "
                        f"{type(data).__name__}, not ImageData or TextData")
    if len(data) == 0:
        raise DataError(f"data source {source!r} ({split} split) is empty")
    data.name = data.name or source
    return data
