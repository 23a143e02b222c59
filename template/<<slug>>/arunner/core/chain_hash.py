"""The runner's own seals over its state: a key the experiment folder does not hold.

Training runs the agent's code with write access to the experiment folder, so a
file there (results.tsv, best_ckpt/meta.json, a run's decision.json, the
protected-file manifest) proves nothing by itself. The runner keeps an HMAC of
each in `.ar-seals.json`, keyed with a secret under the user's state directory
($XDG_STATE_HOME/autoresearch, else ~/.local/state/autoresearch). Editing a
sealed file without the key is seen at the next read; the check is one HMAC per
file (results.tsv: one over its complete rows, and one over all but the last).

Limit, said plainly: code running as the same user can read that key. The seals
stop edits to the experiment's files, not an attack aimed at the runner itself.

results.tsv is sealed before each append (the seal says rows n+1 and keeps the
head over n rows), so a runner killed between the two leaves a state that still
verifies. best's seal keeps the previous meta's HMAC for the same reason.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from . import digests
from .errors import UserError
from .fsutil import atomic_write_json, read_json
from .layout import DECISION, SEALS

KEY_NAME = "key"
KEPT_DECISIONS = 64  # decision seals of the latest runs kept (a recorded run's decision is not read again)


def state_dir() -> Path:
    """The runner's directory outside every experiment: $XDG_STATE_HOME/autoresearch or ~/.local/state/autoresearch."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "autoresearch"


def _key() -> bytes:
    """This user's sealing key, created (mode 0600) on first use."""
    path = state_dir() / KEY_NAME
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another runner created it meanwhile
        return path.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(32))  # what secrets.token_bytes returns, without importing random
    return path.read_bytes()


def _mac(data: bytes, key: bytes | None = None) -> str:
    return digests.hmac_sha256(key or _key(), data)


def _sealed_marker(expr_dir: Path) -> Path:
    """A file outside the experiment that says it has seals (a deleted .ar-seals.json is then seen)."""
    name = digests.sha256(os.fsencode(os.path.realpath(expr_dir))).hexdigest()[:32]
    return state_dir() / "sealed" / name


def _load(expr_dir: Path) -> dict:
    path = Path(expr_dir) / SEALS
    data = read_json(path, "runner seals", "a person must restore it from a backup", default=None)
    if data is None:
        if _sealed_marker(expr_dir).exists():
            raise UserError(
                f"{path} is missing but this experiment was sealed; the runner's state cannot be trusted "
                "(a person must look at what changed it)"
            )
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path} is damaged; a person must look at what changed it")
    return data


def _save(expr_dir: Path, seals: dict) -> None:
    atomic_write_json(Path(expr_dir) / SEALS, seals)
    marker = _sealed_marker(expr_dir)
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        marker.write_text(os.path.realpath(expr_dir) + "\n")


def _mismatch(path: Path) -> UserError:
    return UserError(
        f"{path} differs from what the runner recorded (edited outside ar.py); "
        "nothing was run: a person must restore it or look at what changed it"
    )


# ---------------------------------------------------------------- JSON records (best, decisions) and whole files


def _canonical(data: dict) -> bytes:
    """The bytes sealed for a JSON object: as it reads back from disk (tuples as lists), keys sorted."""
    again = json.loads(json.dumps(data, allow_nan=True))
    return json.dumps(again, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def sign(data: dict) -> str:
    """The runner's HMAC over a small JSON object it keeps beside its state (a file training could rewrite)."""
    return _mac(_canonical(data))


def signed(data: dict, mac) -> bool:
    """Whether `mac` is the runner's signature of `data`."""
    return isinstance(mac, str) and digests.equal(mac, sign(data))


def seal_text(expr_dir: Path, name: str, text: str) -> None:
    """Record the HMAC of a file's exact text (what the runner is about to write) under `name`."""
    seals = _load(expr_dir)
    seals[name] = _mac(text.encode("utf-8"))
    _save(expr_dir, seals)


def holds_seal(expr_dir: Path, name: str, path: Path) -> bool:
    """Whether `path` holds exactly the bytes sealed under `name` (nothing sealed: False)."""
    seals = _load(expr_dir)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return False
    return name in seals and digests.equal(seals[name], _mac(data))


def verify_file(expr_dir: Path, name: str, path: Path) -> None:
    """Raise one line naming `path` when its bytes are not what was sealed under `name` (a missing
    file included); nothing sealed yet: adopted as it is. One read and one HMAC, however large."""
    seals = _load(expr_dir)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        data = None
    if name not in seals:
        if data is not None:
            seals[name] = _mac(data)
            _save(expr_dir, seals)
        return
    if data is None or not digests.equal(seals[name], _mac(data)):
        raise _mismatch(path)


# ---------------------------------------------------------------- best_ckpt/meta.json


def seal_best(expr_dir: Path, meta: dict) -> None:
    """Before a new meta.json is published: it becomes the sealed best, the previous one stays accepted
    (a promotion rolled back by repair leaves the previous best in place)."""
    seals = _load(expr_dir)
    seals["best_prev"] = seals.get("best")
    seals["best"] = _mac(_canonical(meta))
    _save(expr_dir, seals)


def verify_best(expr_dir: Path, meta: dict | None, path: Path) -> None:
    """The best's meta.json is one the runner wrote (or there is none and none was sealed)."""
    seals = _load(expr_dir)
    if "best" not in seals:
        if meta is not None:
            seal_best(expr_dir, meta)
        return
    if meta is None:
        raise _mismatch(path)
    mac = _mac(_canonical(meta))
    if not any(s and digests.equal(s, mac) for s in (seals.get("best"), seals.get("best_prev"))):
        raise _mismatch(path)


# ---------------------------------------------------------------- decision.json


def seal_decision(expr_dir: Path, run_id: str, data: dict) -> None:
    seals = _load(expr_dir)
    decisions = dict(seals.get("decisions") or {})
    decisions[run_id] = _mac(_canonical(data))
    seals["decisions"] = dict(sorted(decisions.items())[-KEPT_DECISIONS:])
    _save(expr_dir, seals)


def decision_is_sealed(expr_dir: Path, run_id: str, data: dict) -> bool:
    """Whether decision.json of run_id holds exactly what the runner decided (False: written by someone else)."""
    sealed = (_load(expr_dir).get("decisions") or {}).get(run_id)
    return bool(sealed) and digests.equal(sealed, _mac(_canonical(data)))


# ---------------------------------------------------------------- results.tsv: a seal over its rows
#
# The rows are sealed in blocks of BLOCK_ROWS: one HMAC over each full block (`blocks`), and one over
# the rows after the last full block (`head`), with `prev` the same over one row fewer (a runner killed
# between sealing and appending). Each HMAC names its block's place, so blocks cannot be moved. An
# append hashes only the rows after the last full block (tens of KB), however long the ledger; a full
# check hashes every row once. Older seals (`v` 2: one HMAC over all rows; no `v`: a chain of one HMAC
# per row) are still checked, until the next append writes this form.

LEDGER_SEAL_VERSION = 3
BLOCK_ROWS = 500


class _Rows:
    """The ledger's complete rows as checked: how many, where the rows after the last full block
    start, those rows, and the HMAC over them (the sealed `head`, or `prev` after a kill)."""

    __slots__ = ("count", "tail_at", "tail", "tail_mac")

    def __init__(self, count: int, tail_at: int, tail: bytes, tail_mac: str):
        self.count, self.tail_at, self.tail, self.tail_mac = count, tail_at, tail, tail_mac


def _block_mac(key: bytes, index: int, rows: bytes) -> str:
    return digests.hmac_sha256(key, b"results.tsv block %d\n" % index + rows)


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
    """(the full blocks of `size` rows of `content`, the offset where the rows after them start)."""
    blocks, at, rows = [], 0, 0
    end = content.find(b"\n")
    while end >= 0:
        rows += 1
        if rows == size:
            blocks.append(content[at : end + 1])
            at, rows = end + 1, 0
        end = content.find(b"\n", end + 1)
    return blocks, at


def _seal_of(content: bytes, key: bytes) -> dict:
    """The seal over `content`, hashed in full (a ledger found unsealed or under an older seal)."""
    blocks, tail_at = _blocks(content, BLOCK_ROWS)
    rows = content.count(b"\n")
    macs = [_block_mac(key, i, block) for i, block in enumerate(blocks)]
    tail = content[tail_at:]
    if rows and not tail:  # the last row closed a block: `prev` is that block's rows without it
        prev = _tail_mac(key, len(blocks) - 1, blocks[-1][: blocks[-1].rfind(b"\n", 0, -1) + 1])
    else:
        prev = _tail_mac(key, len(blocks), tail[: tail.rfind(b"\n", 0, -1) + 1]) if rows else None
    return {
        "v": LEDGER_SEAL_VERSION,
        "rows": rows,
        "block_rows": BLOCK_ROWS,
        "blocks": macs,
        "tail_at": tail_at,
        "head": _tail_mac(key, len(blocks), tail),
        "prev": prev,
    }


def _checked(content: bytes, sealed: dict, key: bytes) -> _Rows | None:
    """`content` against a current seal: its rows, or None when they are not the sealed ones (nor
    those less the last row)."""
    size = sealed.get("block_rows")
    if not isinstance(size, int) or size < 1:
        return None
    blocks, tail_at = _blocks(content, size)
    count, sealed_blocks = content.count(b"\n"), sealed.get("blocks") or []
    if count not in (sealed["rows"], sealed["rows"] - 1) or len(blocks) > len(sealed_blocks):
        return None
    if not all(digests.equal(_block_mac(key, i, b), str(m)) for i, (b, m) in enumerate(zip(blocks, sealed_blocks))):
        return None
    tail = content[tail_at:]
    mac = _tail_mac(key, len(blocks), tail)
    expected = sealed["head"] if count == sealed["rows"] else sealed.get("prev")
    if not (expected and digests.equal(mac, str(expected))):
        return None
    return _Rows(count, tail_at, tail, mac)


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
    seals = _load(expr_dir)
    sealed = seals.get("results")
    if sealed is not None and sealed.get("v") == LEDGER_SEAL_VERSION:
        rows = _tail_if_known(expr_dir, path, sealed)
        if rows is not None:
            return rows, sealed
    content, stat = _complete(path)
    if sealed is None:
        if content:
            seals["results"] = sealed = _seal_of(content, _key())
            _save(expr_dir, seals)
        return None, sealed
    if sealed.get("v") != LEDGER_SEAL_VERSION:
        if not _checked_before_blocks(content, sealed, _key()):
            raise _mismatch(path)
        return None, sealed
    rows = _checked(content, sealed, _key())
    if rows is None:
        raise _mismatch(path)
    if rows.count == sealed["rows"]:  # known from now on by its stat (not the ledger of a killed run)
        _note(path, stat, sealed)
    return rows, sealed


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
    except (OSError, TypeError):
        return None
    return _Rows(sealed["rows"], sealed["tail_at"], tail, sealed["head"])


def verify_ledger(expr_dir: Path, path: Path) -> None:
    """results.tsv holds the rows the runner sealed (one fewer: a runner killed before appending it)."""
    _verified(expr_dir, path)


def before_append(expr_dir: Path, path: Path, line: bytes) -> None:
    """Check results.tsv, then seal it as it will be once `line` is appended (called just before the append)."""
    rows, sealed = _verified(expr_dir, path)
    line = line.rstrip(b"\n") + b"\n"
    if rows is None:  # unsealed, or an older seal: the new one over every row
        new = _seal_of(_complete(path)[0] + line, _key())
    else:
        new = _with_row(rows, sealed, line, _key())
    seals = _load(expr_dir)
    seals["results"] = new
    _save(expr_dir, seals)
    _appended[str(path)] = ([], new)  # its stat once appended: appended()


def _with_row(rows: _Rows, sealed: dict, line: bytes, key: bytes) -> dict:
    """The seal over the checked `rows` and `line` after them: only the rows after the last full block
    are hashed (with `line` they may close a block)."""
    size = sealed["block_rows"]
    blocks = list(sealed["blocks"])[: (rows.count - rows.tail.count(b"\n")) // size]
    tail, tail_at = rows.tail + line, rows.tail_at
    if tail.count(b"\n") == size:
        blocks.append(_block_mac(key, len(blocks), tail))
        tail, tail_at = b"", tail_at + len(tail)
    return {
        "v": LEDGER_SEAL_VERSION,
        "rows": rows.count + 1,
        "block_rows": size,
        "blocks": blocks,
        "tail_at": tail_at,
        "head": _tail_mac(key, len(blocks), tail),
        "prev": rows.tail_mac,
    }


# ---------------------------------------------------------------- results.tsv known by its stat
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
    marker = _sealed_marker(expr_dir)
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
    seal_mac = _mac(_canonical(sealed))
    try:
        record = json.loads(_trust_file(expr_dir).read_bytes())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("stat") != stat or record.get("seal") != seal_mac:
        return False
    return digests.equal(str(record.get("mac", "")), _mac(_canonical({"stat": stat, "seal": seal_mac})))


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
    body = {"stat": stat, "seal": _mac(_canonical(sealed))}
    try:
        atomic_write_json(_trust_file(expr_dir), {**body, "mac": _mac(_canonical(body))}, durable=False)
    except OSError:
        pass


def write_decision(expr_dir: Path, run_dir: Path, data: dict) -> None:
    """decision.json of a run, sealed first (repair trusts only a sealed one)."""
    seal_decision(expr_dir, Path(run_dir).name, data)
    atomic_write_json(Path(run_dir) / DECISION, data)


def trusted_decision(expr_dir: Path, run_dir: Path) -> tuple[dict | None, str]:
    """(decision.json of the run, "") when the runner wrote it; (None, why) when absent or not the runner's."""
    path = Path(run_dir) / DECISION
    data = read_json(path, "run decision", "delete it", default=None)
    if data is None:
        return None, ""
    if isinstance(data, dict) and decision_is_sealed(expr_dir, Path(run_dir).name, data):
        return data, ""
    return None, f"{path.name} was not written by the runner (ignored)"
