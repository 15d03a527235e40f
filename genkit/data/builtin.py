"""genkit's own data sources, registered through the same hook as a plugin's."""

from __future__ import annotations

from collections.abc import Callable

from genkit.discovery.hookspecs import hookimpl

_SOURCES = "genkit.data.sources"


@hookimpl
def register_data_sources(register: Callable[..., None]) -> None:
    register("digits", loader=f"{_SOURCES}:load_digits", modality="image",
             summary="scikit-learn's 8x8 handwritten digits, 1,797 images with labels")
    register("folder", loader=f"{_SOURCES}:load_folder", modality="image",
             summary="a folder of images, read lazily (sub-folders = labels, metadata.jsonl "
                     "= captions)")
    register("text", loader=f"{_SOURCES}:load_text", modality="text",
             summary="a UTF-8 text file")
    register("pydoc", loader=f"{_SOURCES}:load_pydoc", modality="text",
             summary="the English text of Python's pydoc topics")
    register("hf", loader=f"{_SOURCES}:load_hf", modality="image",
             summary="a Hugging Face data set: a local folder or file, or a Hub id "
                     "(from the Hugging Face cache)")
