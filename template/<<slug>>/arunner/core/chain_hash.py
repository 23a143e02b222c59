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
# One HMAC over the exact bytes of the ledger's complete rows (`head`), and one over all but the
# last (`prev`: a runner killed between sealing and appending). One call over the whole file runs
# in C: at 10,000 rows a check costs ~2 ms, where a chain of one HMAC per row cost ~65 ms, and a
# run checks the ledger several times. Seals written before `v` existed hold such a chain
# (`_chain`); they are still checked that way until the next append writes the new form.

LEDGER_SEAL_VERSION = 2
# The ledger as this process last verified it: path -> (key, seal, rows, their head). A run checks
# the ledger before training, after it and before appending; rows byte-equal to the ones verified
# with the same key against the same seal need no second HMAC (at 10,000 rows: 0.8 MB hashed once, not three times).
_verified_rows: dict[str, tuple[bytes, dict, bytes, str]] = {}


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


def _head(content: bytes, key: bytes) -> str:
    """The HMAC over the ledger's exact bytes (`head` of a seal over `content`, `prev` of one over a row more)."""
    return digests.hmac_sha256(key, b"results.tsv\n" + content)


def _seal_of(content: bytes, key: bytes, prev: str | None = None) -> dict:
    """The seal over `content`; `prev`, when the caller already has it, is the head over all but the last row."""
    rows = content.count(b"\n")
    if rows and prev is None:
        prev = _head(content[: content.rfind(b"\n", 0, len(content) - 1) + 1], key)
    return {"v": LEDGER_SEAL_VERSION, "rows": rows, "head": _head(content, key), "prev": prev if rows else None}


def _verified(expr_dir: Path, path: Path) -> tuple[bytes, str | None]:
    """(the ledger's complete rows, their head) once checked against the seal; the head is None when
    it was not computed (an older seal: the chain checked it)."""
    seals = _load(expr_dir)
    sealed = seals.get("results")
    content, stat = _complete(path)
    memo = _verified_rows.get(str(path))
    if memo is not None and memo[1:3] == (sealed, content) and memo[0] == _key():
        return content, memo[3]
    if sealed is not None and sealed.get("v") == LEDGER_SEAL_VERSION and _as_appended(expr_dir, stat, sealed["head"]):
        return content, sealed["head"]
    if sealed is None:
        if content:
            seals["results"] = _seal_of(content, _key())
            _save(expr_dir, seals)
        return content, None
    if sealed.get("v") != LEDGER_SEAL_VERSION:  # an older seal: the chain over the rows
        heads = _chain(content.split(b"\n")[:-1], _key())
        n, head, ours = len(heads) - 1, heads[-1], None
    else:  # only the head: a seal's `prev` is compared with the head of one row fewer, never recomputed here
        n, head = content.count(b"\n"), _head(content, _key())
        ours = head
    if not (n == sealed["rows"] and digests.equal(head, sealed["head"])) and not (
        n == sealed["rows"] - 1 and sealed.get("prev") and digests.equal(head, sealed["prev"])
    ):
        raise _mismatch(path)
    if ours is not None:
        _verified_rows[str(path)] = (_key(), sealed, content, ours)
    return content, ours


def verify_ledger(expr_dir: Path, path: Path) -> None:
    """results.tsv holds the rows the runner sealed (one fewer: a runner killed before appending it)."""
    _verified(expr_dir, path)


def before_append(expr_dir: Path, path: Path, line: bytes) -> None:
    """Check results.tsv, then seal it as it will be once `line` is appended (called just before the append)."""
    content, head = _verified(expr_dir, path)
    key = _key()
    prev = head if head is not None else _head(content, key)  # the checked rows: `prev` of the new seal
    sealed = _seal_of(content + line.rstrip(b"\n") + b"\n", key, prev)
    seals = _load(expr_dir)
    seals["results"] = sealed
    _save(expr_dir, seals)
    _appended[str(path)] = ([], sealed["head"])  # its stat once appended: appended()


# ---------------------------------------------------------------- results.tsv as the runner appended it
#
# Right after its append the runner knows the ledger holds the sealed rows. It notes the file's stat
# then (size, mtime, ctime, inode, device) and, before it exits, records that stat with the seal's head,
# MAC'd, beside the sealed marker (outside the experiment). A check that finds the same stat and head
# needs no HMAC over the rows: at 10,000 rows a run hashes the ledger once (for its new seal), not
# before training as well. ctime cannot be set back and any write moves it, except a write within the
# same tick of the kernel's coarse clock, where file times come from: the record is written only when
# the append's ctime is not that clock's current tick (the tick is over, or the time is finer than the
# clock: a kernel with fine-grained times gives a write after a stat a later one) and the stat is still
# the one noted; else (not Linux, the same tick, a file system that rounds times to milliseconds or
# coarser) the next check hashes as before. A record lost or damaged is ignored the same way.

_appended: dict[str, tuple[list[int], str]] = {}  # ledger path -> (its stat right after our append, the head)
_CLOCK_REALTIME_COARSE = 5  # Linux's clockid (the time module names it from Python 3.13 on)


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _trust_file(expr_dir: Path) -> Path:
    marker = _sealed_marker(expr_dir)
    return marker.with_name(marker.name + ".ledger")


def appended(path: Path, fd: int) -> None:
    """The runner appended its row to `path` through `fd` (after before_append): note the stat."""
    noted = _appended.get(str(path))
    if noted is not None:
        _appended[str(path)] = (_stat_key(os.fstat(fd)), noted[1])


def record_appended(expr_dir: Path, path: Path) -> None:
    """Before the runner exits: record that the ledger is as it appended it, when that can be told (above)."""
    stat, head = _appended.pop(str(path), (None, ""))
    if not stat or not sys.platform.startswith("linux"):
        return
    try:
        ctime = stat[2]
        if _stat_key(os.stat(path)) != stat or ctime % 1_000_000 == 0:
            return  # moved since the append, or times rounded: a later write could keep this ctime
        if time.clock_gettime_ns(_CLOCK_REALTIME_COARSE) == ctime:
            return  # a write later in this clock tick would keep it too
        body = {"stat": stat, "head": head}
        atomic_write_json(_trust_file(expr_dir), {**body, "mac": _mac(_canonical(body))}, durable=False)
    except OSError:
        pass


def _as_appended(expr_dir: Path, stat: list[int] | None, head: str) -> bool:
    """Whether the ledger, read with `stat`, is byte for byte what the runner appended under `head`."""
    if not stat:
        return False
    try:
        record = json.loads(_trust_file(expr_dir).read_bytes())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("stat") != stat or record.get("head") != head:
        return False
    return digests.equal(str(record.get("mac", "")), _mac(_canonical({"stat": stat, "head": head})))


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
