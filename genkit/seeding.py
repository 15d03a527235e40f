"""Seeds derived from a base seed and a position: the root of genkit's determinism.

Every random stream genkit hands out (sample i of a batch run, the training step s on
process r) is seeded by hashing its coordinates, so it depends on nothing else: not the
batch it is drawn in, not the resume point, not the number of processes.
"""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that is a pure function of ``parts`` (stable across runs and machines)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample ``index`` of a run with base ``seed``."""
    return derive_seed("sample", seed, index)
