"""Loading a data source by its spec, through the sources plugins (and genkit) register."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genkit.data.types import (
    DataOptions,
    ImageData,
    TextData,
    data_options,
    normalise_split,
    parse_source,
)
from genkit.discovery.registry import BUILTIN, get_registry
from genkit.errors import ConfigError, DataError, GenkitError


def load_data(source: Any, split: str = "train",
              options: Mapping[str, Any] | DataOptions | None = None,
              **more: Any) -> ImageData | TextData:
    """Load ``source`` (a spec string, or already-loaded data which is returned as is).

    ``split`` is genkit's split (``train``, ``test``, ``all``); ``options`` (and keyword
    arguments) are the source's options, for genkit's own sources the fields of
    :class:`DataOptions`, given typed or as ``--set`` strings and checked here: a bad
    value is one ConfigError line before anything is read. The data set's own split to
    train on is the option ``split`` (``options={"split": "validation"}``).
    """
    if isinstance(source, (ImageData, TextData)):
        return source
    if not isinstance(source, str) or not source.strip():
        raise DataError("a data source is a string such as 'digits', 'folder:PATH', "
                        "'text:PATH' or 'pydoc'")
    scheme, argument = parse_source(source)
    spec = get_registry().data_source(scheme)
    role = normalise_split(split)
    if spec.plugin == BUILTIN:
        kwargs: dict[str, Any] = {"options": data_options(options, **more)}
    else:
        kwargs = {**(dict(options) if isinstance(options, Mapping) else {}), **more}
        if "split" in kwargs:
            raise ConfigError(f"the data option split is for genkit's hf: source, not "
                              f"{scheme!r} ({spec.plugin})")
    try:
        data = spec.load(argument, split=role, **kwargs)
    except GenkitError:
        raise
    except Exception as exc:  # a plugin's loader must not end the command with a traceback
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise DataError(f"data source {source!r} ({spec.plugin}) failed: {detail}") from exc
    if not isinstance(data, (ImageData, TextData)):
        raise DataError(f"data source {source!r} ({spec.plugin}) returned "
                        f"{type(data).__name__}, not ImageData or TextData")
    if not getattr(data, "streaming", False) and len(data) == 0:  # streams checked on open
        raise DataError(f"data source {source!r} ({split} split) is empty")
    data.name = data.name or source
    return data
