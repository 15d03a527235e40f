"""Which genkit a plugin's distribution asks for, read from its metadata without importing it.

``packaging`` is imported only when a requirement line names genkit (its specifier module
only, and its marker module only when the line has a marker), which keeps discovery light.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata


@dataclass
class DistributionFacts:
    """What discovery needs from a distribution's metadata, read once per distribution."""

    name: str | None
    version: str | None
    genkit_requirement: str | None  # e.g. ">=0.2,<1" when it declares one


def distribution_facts(dist: metadata.Distribution | None) -> DistributionFacts:
    if dist is None:
        return DistributionFacts(None, None, None)
    meta = dist.metadata
    return DistributionFacts(meta["Name"], meta["Version"],
                             genkit_requirement(meta.get_all("Requires-Dist") or []))


#: ``genkit [extras] (specifier) ; marker`` as written in Requires-Dist
_GENKIT_LINE = re.compile(r"^\s*genkit(?![A-Za-z0-9._-])\s*(?:\[[^\]]*\])?"  # name, extras
                          r"\s*\(?(?P<spec>[^;()]*)\)?\s*(?:;(?P<marker>.*))?$",  # spec; marker
                          re.IGNORECASE)


def genkit_requirement(requires: list[str]) -> str | None:
    """The specifier a distribution puts on ``genkit`` in its requirements, if any.

    A requirement under an environment marker counts when the marker holds here (extras
    do not: they are optional).
    """
    specifiers = []
    for line in requires:
        match = _GENKIT_LINE.match(line)
        if not match:
            continue
        spec, marker = match.group("spec").strip(), match.group("marker")
        if spec.startswith("@") or (marker and not _marker_holds(marker)):
            continue  # a direct URL names no version; a marker may not hold here
        if spec:
            specifiers.append(spec)
    return ",".join(specifiers) or None


def _marker_holds(marker: str) -> bool:
    from packaging.markers import InvalidMarker, Marker, UndefinedEnvironmentName

    try:
        return Marker(marker.strip()).evaluate({"extra": ""})
    except (InvalidMarker, UndefinedEnvironmentName):
        return False


def satisfies(version: str, specifier: str) -> bool:
    """Whether ``version`` meets ``specifier`` (an invalid specifier is never met)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        return SpecifierSet(specifier).contains(version, prereleases=True)
    except InvalidSpecifier:
        return False


def normalise(name: str) -> str:
    """A distribution or plugin name in PEP 503 form (``Genkit_Plugin.Flow`` -> ``genkit-plugin-flow``)."""
    return re.sub(r"[-_.]+", "-", name).lower()
