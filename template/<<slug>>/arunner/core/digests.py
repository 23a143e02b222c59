"""sha1, sha256 and HMAC-SHA256 without paying for OpenSSL on every command.

`import hashlib` loads OpenSSL: 3-5 ms, at every `ar.py run`, for a few digests of small files.
CPython's built-in hash modules give the same digests for ~1 ms of loading, but are ~6x slower
per byte, so data past LARGE_BYTES (a big protected file) goes to
hashlib, imported then. A Python built without the built-in modules uses hashlib throughout.
"""

from __future__ import annotations

try:
    from _operator import _compare_digest  # what hmac.compare_digest is: constant time
except ImportError:  # not CPython
    from hmac import compare_digest as _compare_digest

try:
    from _sha256 import sha256 as _small_sha256  # CPython <= 3.11
except ImportError:
    try:
        from _sha2 import sha256 as _small_sha256  # CPython >= 3.12
    except ImportError:
        from hashlib import sha256 as _small_sha256
try:
    from _sha1 import sha1 as _small_sha1
except ImportError:
    from hashlib import sha1 as _small_sha1

__all__ = ["LARGE_BYTES", "equal", "hmac_sha256", "sha1", "sha256"]

LARGE_BYTES = 256 * 1024  # past this, OpenSSL's speed per byte outweighs its start-up
_BLOCK = 64  # sha256's block size (RFC 2104: keys are padded to it)
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def sha256(data: bytes = b"", size: int | None = None):
    """A sha256 object over `data`; `size`: how much more will be update()d (a file read in blocks)."""
    if len(data) + (size or 0) > LARGE_BYTES:
        import hashlib  # only large data pays for OpenSSL's start-up

        return hashlib.sha256(data)
    return _small_sha256(data)


def sha1(data: bytes):
    """A sha1 object over `data` (the code keys of the changes index)."""
    if len(data) > LARGE_BYTES:
        import hashlib

        return hashlib.sha1(data)
    return _small_sha1(data)


def equal(a, b) -> bool:
    """Whether two digests (hex text or bytes) are equal, in constant time; text that is not ASCII or a
    value of another type (a damaged seal read back from JSON) is unequal, never an error."""
    try:
        return _compare_digest(a, b)
    except TypeError:
        return False


def hmac_sha256(key: bytes, data: bytes, batch: int = 0) -> str:
    """RFC 2104 HMAC over `data` with sha256, in hex: what hmac.new(key, data, hashlib.sha256).hexdigest() gives.
    `batch`: the bytes of a pass this HMAC is one piece of (a ledger's blocks): a large pass goes to
    OpenSSL though each piece is small."""
    if len(key) > _BLOCK:
        key = sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = sha256(key.translate(_IPAD), size=max(len(data), batch))
    inner.update(data)
    return sha256(key.translate(_OPAD) + inner.digest()).hexdigest()
