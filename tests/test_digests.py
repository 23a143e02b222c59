"""core/digests: the same sha1, sha256 and HMAC-SHA256 as hashlib and hmac, without OpenSSL for small data."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys

import pytest

import arunner
from arunner.core import digests

SIZES = [0, 1, 63, 64, 65, 4096, digests.LARGE_BYTES - 1, digests.LARGE_BYTES, digests.LARGE_BYTES + 1]


@pytest.mark.parametrize("size", SIZES)
def test_digests_equal_hashlib_on_either_side_of_the_large_threshold(size):
    data = os.urandom(size)
    assert digests.sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    assert digests.sha1(data).hexdigest() == hashlib.sha1(data).hexdigest()
    streamed = digests.sha256(size=size)
    streamed.update(data[: size // 2])
    streamed.update(data[size // 2 :])
    assert streamed.hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("key_size", [0, 1, 32, 64, 65, 200])
@pytest.mark.parametrize("size", [0, 100, digests.LARGE_BYTES + 1])
def test_hmac_equals_the_standard_library_for_any_key_length(key_size, size):
    key, data = os.urandom(key_size), os.urandom(size)
    assert digests.hmac_sha256(key, data) == hmac.new(key, data, hashlib.sha256).hexdigest()
    # one piece of a large pass (OpenSSL) or of a small one: the same digest
    assert digests.hmac_sha256(key, data, batch=digests.LARGE_BYTES + 1) == digests.hmac_sha256(key, data, batch=0)


def test_equal_compares_digests_and_a_damaged_one_is_unequal_not_an_error():
    assert digests.equal("ab12", "ab12") and not digests.equal("ab12", "ab13")
    assert not digests.equal("é", "é") and not digests.equal(None, "ab12") and not digests.equal(12, "ab12")


def test_the_run_path_and_small_digests_load_no_openssl():
    """The point of the module: `ar.py run` on a small experiment never imports hashlib (3-5 ms)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from arunner.commands import cli; from arunner.loop import iteration, engine\n"
        "from arunner.core import chain_hash, digests\n"
        "digests.hmac_sha256(b'k', b'x' * 1000); digests.sha1(b'x').hexdigest()\n"
        "print(sorted(m for m in ('hashlib', '_hashlib', 'hmac') if m in sys.modules))\n"
    )
    root = os.path.dirname(os.path.dirname(arunner.__file__))
    out = subprocess.run([sys.executable, "-c", code, root], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
