"""Every exception genkit raises on purpose.

Library code raises these; the CLI turns a :class:`GenkitError` into one line on stderr
and exit status 2. Each message says what is wrong and what to do next.
"""

from __future__ import annotations


class GenkitError(Exception):
    """Base class of genkit's own errors: a user-facing, one-line message."""


class ConfigError(GenkitError, ValueError):
    """A configuration or option value is unknown, of the wrong type, or out of range."""


class PluginError(GenkitError):
    """A plugin could not be found, imported, or registered."""


class PluginClashError(PluginError):
    """Two plugins claim the same generator or data-source name."""


class CheckpointError(GenkitError):
    """A checkpoint directory is missing, damaged, truncated, or not a genkit checkpoint."""


class DataError(GenkitError):
    """A data source is unknown, missing, or empty."""


class DeviceError(GenkitError):
    """A device or precision that is not available on this machine."""


class TrainingError(GenkitError):
    """Training cannot start or cannot go on (for example, a non-finite loss)."""


class SamplingError(GenkitError):
    """Batch generation cannot start or cannot go on."""


class FolderBusyError(GenkitError):
    """Another genkit process is writing the same output or run folder."""
