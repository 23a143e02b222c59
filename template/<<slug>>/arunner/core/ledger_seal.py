"""results.tsv's seal: the runner's HMACs over the ledger's rows, kept in `.ar-seals.json` (chain_hash).

Training runs the agent's code with write access to the experiment folder, so results.tsv proves
nothing by itself; its seal, keyed with the runner's secret outside the experiment, does. The ledger
is sealed before each append (the seal says rows n+1 and keeps the HMAC over n rows), so a runner
killed between the two leaves a state that still verifies.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# chain_hash by module, its functions looked up when called: `ar.py upgrade` imports the new release's
# modules into the earlier release's process, where chain_hash may be the earlier one already loaded
from . import chain_hash, digests
from .fsutil import atomic_write_json

# ---------------------------------------------------------------- the seal over its rows
#
# The rows are sealed in blocks: a block is the fewest rows, from where the last one ended, that make
# BLOCK_BYTES or more. One HMAC over each full block (`blocks`), and one over the rows after the last
# full block (`head`, under BLOCK_BYTES), with `prev` the same over one row fewer (a runner killed
# between sealing and appending). Each HMAC names its block's place, so blocks cannot be moved. An
# append hashes only the rows after the last full block, however long the ledger; a full check hashes
# every row once, and finds each block's end with one search. Older seals (`v` 2: one HMAC over all
# rows; no `v`: a chain of one HMAC per row) are still checked, until the next append writes this form.

LEDGER_SEAL_VERSION = 3
BLOCK_BYTES = 64 * 1024  # ~800 rows; .ar-seals.json holds one HMAC per block (~125 at 100,000 rows)


class _Rows:
    """The ledger's complete rows as checked: how many, how many full blocks, where the rows after
    them start, those rows, and the HMAC over them (the sealed `head`, or `prev` after a kill)."""

    __slots__ = ("count", "full", "tail_at", "tail", "tail_mac")

    def __init__(self, count: int, full: int, tail_at: int, tail: bytes, tail_mac: str):
        self.count, self.full, self.tail_at, self.tail, self.tail_mac = count, full, tail_at, tail, tail_mac


def _block_mac(key: bytes, index: int, rows: bytes, batch: int = 0) -> str:
    """`batch`: the bytes of the whole check (OpenSSL hashes a long ledger ~7x faster)."""
    return digests.hmac_sha256(key, b"results.tsv block %d\n" % index + rows, batch)


def _tail_mac(key: bytes, index: int, rows: bytes) -> str:
    return digests.hmac_sha256(key, b"results.tsv tail %d\n" % index + rows)


def _chain(lines: list[bytes], key: bytes) -> list[str]:
    """heads[i]: HMAC chain over the first i lines (heads[0] over nothing): the seal before version 2."""
    heads = [digests.hmac_sha256(key, b"results.tsv")]
    for line in lines:
        heads.append(digests.hmac_sha256(key, heads[-1].encode() + line))
    return heads


def _complete(path: Path) -> tuple[bytes, list[int] | None]:
    """(the ledger's complete rows as bytes, its stat while they were read: None if it moved meanwhile);
    a trailing partial row is left out (repair drops it)."""
    try:
        with open(path, "rb") as fh:
            before = _stat_key(os.fstat(fh.fileno()))
            data = fh.read()
            stat = before if _stat_key(os.fstat(fh.fileno())) == before else None
    except FileNotFoundError:
        return b"", None
    return data[: data.rfind(b"\n") + 1], stat


def _blocks(content: bytes, size: int) -> tuple[list[bytes], int]:
    """(the full blocks of `content`, the offset where the rows after them start): each block runs to
    the first row end at or past `size` bytes from its start. `content` is complete rows."""
    blocks, at = [], 0
    end = content.find(b"\n", at + size - 1)
    while end >= 0:
        blocks.append(content[at : end + 1])
        at = end + 1
        end = content.find(b"\n", at + size - 1)
    return blocks, at


def _seal_of(content: bytes, key: bytes) -> dict:
    """The seal over `content`, hashed in full (a ledger found unsealed or under an older seal)."""
    blocks, tail_at = _blocks(content, BLOCK_BYTES)
    rows = content.count(b"\n")
    macs = [_block_mac(key, i, block, len(content)) for i, block in enumerate(blocks)]
    tail = content[tail_at:]
    if rows and not tail:  # the last row closed a block: `prev` is that block's rows without it
        prev = _tail_mac(key, len(blocks) - 1, blocks[-1][: blocks[-1].rfind(b"\n", 0, -1) + 1])
    else:
        prev = _tail_mac(key, len(blocks), tail[: tail.rfind(b"\n", 0, -1) + 1]) if rows else None
    return {
        "v": LEDGER_SEAL_VERSION,
        "rows": rows,
        "block_bytes": BLOCK_BYTES,
        "blocks": macs,
        "tail_at": tail_at,
        "head": _tail_mac(key, len(blocks), tail),
        "prev": prev,
    }


def _checked(content: bytes, sealed: dict, key: bytes) -> _Rows | None:
    """`content` against a current seal: its rows, or None when they are not the sealed ones (nor
    those less the last row)."""
    blocks, tail_at = _blocks(content, sealed["block_bytes"])
    count, sealed_blocks = content.count(b"\n"), sealed["blocks"]
    if count not in (sealed["rows"], sealed["rows"] - 1) or len(blocks) > len(sealed_blocks):
        return None
    macs = (_block_mac(key, i, block, len(content)) for i, block in enumerate(blocks))
    if not all(digests.equal(ours, kept) for ours, kept in zip(macs, sealed_blocks)):
        return None
    tail = content[tail_at:]
    tail_mac = _tail_mac(key, len(blocks), tail)
    expected = sealed["head"] if count == sealed["rows"] else sealed.get("prev")
    if not (expected and digests.equal(tail_mac, expected)):
        return None
    return _Rows(count, len(blocks), tail_at, tail, tail_mac)


def _checked_before_blocks(content: bytes, sealed: dict, key: bytes) -> bool:
    """`content` against a seal written before blocks: one HMAC over all rows (v 2) or a chain (none)."""
    if sealed.get("v") == 2:
        n, head = content.count(b"\n"), digests.hmac_sha256(key, b"results.tsv\n" + content)
    else:
        heads = _chain(content.split(b"\n")[:-1], key)
        n, head = len(heads) - 1, heads[-1]
    return (n == sealed["rows"] and digests.equal(head, sealed["head"])) or bool(
        n == sealed["rows"] - 1 and sealed.get("prev") and digests.equal(head, sealed["prev"])
    )


def _verified(expr_dir: Path, path: Path) -> tuple[_Rows | None, dict | None]:
    """(the ledger's rows once checked against the seal, the seal); rows None: a seal older than blocks
    (checked; the next append reseals in full). A ledger the runner left as it appended it, or already
    checked by this process, is not read in full nor hashed again (see below)."""
    seals = chain_hash.load_seals(expr_dir)
    sealed = seals.get("results")
    if sealed is not None and not _well_formed(sealed):
        raise chain_hash.mismatch(path)
    if sealed is not None and sealed.get("v") == LEDGER_SEAL_VERSION:
        rows = _tail_if_known(expr_dir, path, sealed)
        if rows is not None:
            return rows, sealed
    content, stat = _complete(path)
    if sealed is None:
        if content:
            seals["results"] = sealed = _seal_of(content, chain_hash.sealing_key())
            chain_hash.save_seals(expr_dir, seals)
        return None, sealed
    if sealed.get("v") != LEDGER_SEAL_VERSION:
        if not _checked_before_blocks(content, sealed, chain_hash.sealing_key()):
            raise chain_hash.mismatch(path)
        return None, sealed
    rows = _checked(content, sealed, chain_hash.sealing_key())
    if rows is None:
        raise chain_hash.mismatch(path)
    if rows.count == sealed["rows"]:  # known from now on by its stat (not the ledger of a killed run)
        _note(path, stat, sealed)
    return rows, sealed


def _well_formed(sealed) -> bool:
    """Whether a seal read back has the fields of its version (a damaged one is a mismatch, never a traceback)."""
    if not isinstance(sealed, dict) or type(sealed.get("rows")) is not int or not isinstance(sealed.get("head"), str):
        return False
    if not isinstance(sealed.get("prev"), (str, type(None))):
        return False
    if sealed.get("v") != LEDGER_SEAL_VERSION:
        return True
    size, blocks, tail_at = sealed.get("block_bytes"), sealed.get("blocks"), sealed.get("tail_at")
    return (
        type(size) is int
        and size >= 1
        and type(tail_at) is int
        and tail_at >= 0
        and isinstance(blocks, list)
        and all(isinstance(b, str) for b in blocks)
    )


def _tail_if_known(expr_dir: Path, path: Path, sealed: dict) -> _Rows | None:
    """The rows after the last full block, read alone, when the ledger is known to hold exactly the
    sealed rows (below); else None."""
    try:
        with open(path, "rb") as fh:
            stat = _stat_key(os.fstat(fh.fileno()))
            if not _known(expr_dir, path, stat, sealed):
                return None
            fh.seek(sealed["tail_at"])
            tail = fh.read()
            if _stat_key(os.fstat(fh.fileno())) != stat:
                return None
    except OSError:
        return None
    return _Rows(sealed["rows"], len(sealed["blocks"]), sealed["tail_at"], tail, sealed["head"])


def verify_ledger(expr_dir: Path, path: Path) -> None:
    """results.tsv holds the rows the runner sealed (one fewer: a runner killed before appending it)."""
    _verified(expr_dir, path)


def before_append(expr_dir: Path, path: Path, line: bytes) -> None:
    """Check results.tsv, then seal it as it will be once `line` is appended (called just before the append)."""
    rows, sealed = _verified(expr_dir, path)
    line = line.rstrip(b"\n") + b"\n"
    if rows is None:  # unsealed, or an older seal: the new one over every row
        new = _seal_of(_complete(path)[0] + line, chain_hash.sealing_key())
    else:
        new = _with_row(rows, sealed, line, chain_hash.sealing_key())
    seals = chain_hash.load_seals(expr_dir)
    seals["results"] = new
    chain_hash.save_seals(expr_dir, seals)
    _appended[str(path)] = ([], new)  # its stat once appended: appended()


def _with_row(rows: _Rows, sealed: dict, line: bytes, key: bytes) -> dict:
    """The seal over the checked `rows` and `line` after them: only the rows after the last full block
    are hashed (with `line` they may close a block)."""
    size = sealed["block_bytes"]
    blocks = list(sealed["blocks"])[: rows.full]
    tail, tail_at = rows.tail + line, rows.tail_at
    if len(tail) >= size:  # the rows after the last block were under `size`: `line` closes one
        blocks.append(_block_mac(key, len(blocks), tail))
        tail, tail_at = b"", tail_at + len(tail)
    return {
        "v": LEDGER_SEAL_VERSION,
        "rows": rows.count + 1,
        "block_bytes": size,
        "blocks": blocks,
        "tail_at": tail_at,
        "head": _tail_mac(key, len(blocks), tail),
        "prev": rows.tail_mac,
    }


# ---------------------------------------------------------------- a ledger known by its stat
#
# A ledger already checked, or just appended to by the runner, is known by its stat (size, mtime, ctime,
# inode, device) with the seal it was checked against: a check that finds both unchanged reads only the
# rows after the last full block. Before it exits the runner records its appended ledger's stat and seal,
# MAC'd, beside the sealed marker (outside the experiment), so the next run's checks hash nothing either.
# ctime cannot be set back and any write moves it, except a write within the same tick of the kernel's
# coarse clock, where file times come from: a stat is trusted only when its ctime is not that clock's
# current tick (the tick is over, or the time is finer than the clock: a kernel with fine-grained times
# gives a write after a stat a later one). Not Linux, a file system that rounds times to milliseconds or
# coarser, or a record lost or damaged: the ledger is hashed in full as before.

_known_stats: dict[str, tuple[list[int], dict]] = {}  # ledger path -> (a trusted stat, the seal it holds)
_appended: dict[str, tuple[list[int], dict]] = {}  # ledger path -> (its stat right after our append, the seal)
_CLOCK_REALTIME_COARSE = 5  # Linux's clockid (the time module names it from Python 3.13 on)


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _stat_of(path: Path) -> list[int] | None:
    try:
        return _stat_key(os.stat(path))
    except OSError:
        return None


def _settled(stat: list[int]) -> bool:
    """Whether any later write to the file will change this stat (see above)."""
    ctime = stat[2]
    if not sys.platform.startswith("linux") or ctime % 1_000_000 == 0:
        return False  # times rounded to milliseconds: a later write could keep this ctime
    return time.clock_gettime_ns(_CLOCK_REALTIME_COARSE) != ctime  # else a write later in this tick would


def _trust_file(expr_dir: Path) -> Path:
    marker = chain_hash.sealed_marker(expr_dir)
    return marker.with_name(marker.name + ".ledger")


def _note(path: Path, stat: list[int] | None, sealed: dict) -> None:
    """The ledger, read with `stat`, holds the rows `sealed` says (checked just now)."""
    if stat is not None and _settled(stat):
        _known_stats[str(path)] = (stat, sealed)


def _known(expr_dir: Path, path: Path, stat: list[int], sealed: dict) -> bool:
    """Whether the ledger with `stat` is known to hold the rows `sealed` says: checked by this process,
    appended to by it (once that clock tick is over), or so recorded by the runner that last appended."""
    checked, ours = _known_stats.get(str(path)), _appended.get(str(path))
    if checked is not None and checked[0] == stat and checked[1] == sealed:
        return True
    if ours is not None and ours[0] == stat and ours[1] == sealed and _settled(stat):
        return True
    seal_mac = chain_hash.sign(sealed)
    try:
        record = json.loads(_trust_file(expr_dir).read_bytes())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("stat") != stat or record.get("seal") != seal_mac:
        return False
    return chain_hash.signed({"stat": stat, "seal": seal_mac}, record.get("mac"))


def appended(path: Path, fd: int) -> None:
    """The runner appended its row to `path` through `fd` (after before_append): note the stat."""
    noted = _appended.get(str(path))
    if noted is not None:
        _appended[str(path)] = (_stat_key(os.fstat(fd)), noted[1])


def record_appended(expr_dir: Path, path: Path) -> None:
    """Before the runner exits: record that the ledger is as it appended it, when that can be told (above)."""
    stat, sealed = _appended.get(str(path), (None, {}))
    if not stat or _stat_of(path) != stat or not _settled(stat):
        return
    body = {"stat": stat, "seal": chain_hash.sign(sealed)}
    try:
        atomic_write_json(_trust_file(expr_dir), {**body, "mac": chain_hash.sign(body)}, durable=False)
    except OSError:
        pass
