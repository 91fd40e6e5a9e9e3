"""Content digests: parse and validate ``sha256:<64hex>`` / ``sha512:<128hex>``, hash incrementally.

Only the two algorithms the OCI image spec registers are accepted, and only in their canonical
lowercase hex form: a digest is also a file name in the cache, so anything looser is refused here,
once, before it can reach a path.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum


class Algorithm(StrEnum):
    SHA256 = "sha256"
    SHA512 = "sha512"

    @property
    def hex_length(self) -> int:
        return 64 if self is Algorithm.SHA256 else 128


_DIGEST_RE = re.compile(r"(sha256|sha512):([0-9a-f]+)")


@dataclass(frozen=True, slots=True)
class Digest:
    """A validated digest.  ``str(d)`` is the canonical ``algorithm:hex`` form."""

    algorithm: Algorithm
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def hasher(self) -> DigestHasher:
        return DigestHasher(self.algorithm)


def parse_digest(text: str) -> Digest:
    """Parse a digest string; ``ValueError`` (with the reason) when it is not a valid one."""
    match = _DIGEST_RE.fullmatch(text)
    if match is None:
        shown = text if len(text) <= 140 else text[:140] + "..."
        raise ValueError(f"invalid digest {shown!r}: expected sha256:<64 hex> or sha512:<128 hex>")
    algorithm = Algorithm(match.group(1))
    hex_part = match.group(2)
    if len(hex_part) != algorithm.hex_length:
        raise ValueError(
            f"invalid digest {text!r}: {algorithm} needs {algorithm.hex_length} hex digits,"
            f" got {len(hex_part)}"
        )
    return Digest(algorithm, hex_part)


def is_digest(text: str) -> bool:
    try:
        parse_digest(text)
    except ValueError:
        return False
    return True


class DigestHasher:
    """Incremental hash of one algorithm.

    ``update`` may run in a worker thread: hashlib releases the GIL for large buffers, so hashing a
    stream off the event loop costs the loop nothing.
    """

    __slots__ = ("_hash", "algorithm", "length")

    def __init__(self, algorithm: Algorithm) -> None:
        self.algorithm = algorithm
        self._hash = hashlib.new(str(algorithm))
        self.length = 0

    def update(self, data: bytes) -> None:
        self._hash.update(data)
        self.length += len(data)

    def digest(self) -> Digest:
        return Digest(self.algorithm, self._hash.hexdigest())

    def matches(self, expected: Digest) -> bool:
        return expected.algorithm == self.algorithm and self._hash.hexdigest() == expected.hex


def digest_of(data: bytes, algorithm: Algorithm = Algorithm.SHA256) -> Digest:
    hasher = DigestHasher(algorithm)
    hasher.update(data)
    return hasher.digest()
