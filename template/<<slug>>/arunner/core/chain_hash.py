"""The runner's own seals over its state: a key the experiment folder does not hold.

Training runs the agent's code with write access to the experiment folder, so a
file there (results.tsv, best_ckpt/meta.json, a run's decision.json, the
protected-file manifest) proves nothing by itself. The runner keeps an HMAC of
each in `.ar-seals.json`, keyed with a secret under the user's state directory
($XDG_STATE_HOME/autoresearch, else ~/.local/state/autoresearch). Editing a
sealed file without the key is seen at the next read; the check is one HMAC per
file (results.tsv: one per block of rows, in ledger_seal).

Limit, said plainly: code running as the same user can read that key. The seals
stop edits to the experiment's files, not an attack aimed at the runner itself.

best's seal keeps the previous meta's HMAC, so a promotion rolled back by repair
still verifies.
"""

from __future__ import annotations

import json
import os
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


_keys: dict[str, bytes] = {}  # key file -> its key: read once per process (a run seals and checks ~10 times)


def sealing_key() -> bytes:
    """This user's sealing key, created (mode 0600) on first use."""
    path = state_dir() / KEY_NAME
    key = _keys.get(str(path))
    if key is None:
        key = _keys[str(path)] = _read_or_create_key(path)
    return key


def _read_or_create_key(path: Path) -> bytes:
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
    return digests.hmac_sha256(key or sealing_key(), data)


_marker_names: dict[str, str] = {}  # experiment folder -> its marker's name (a realpath and a sha256)


def sealed_marker(expr_dir: Path) -> Path:
    """A file outside the experiment that says it has seals (a deleted .ar-seals.json is then seen)."""
    name = _marker_names.get(str(expr_dir))
    if name is None:
        name = digests.sha256(os.fsencode(os.path.realpath(expr_dir))).hexdigest()[:32]
        _marker_names[str(expr_dir)] = name
    return state_dir() / "sealed" / name


def load_seals(expr_dir: Path) -> dict:
    path = Path(expr_dir) / SEALS
    data = read_json(path, "runner seals", "a person must restore it from a backup", default=None)
    if data is None:
        if sealed_marker(expr_dir).exists():
            raise UserError(
                f"{path} is missing but this experiment was sealed; the runner's state cannot be trusted "
                "(a person must look at what changed it)"
            )
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path} is damaged; a person must look at what changed it")
    return data


def save_seals(expr_dir: Path, seals: dict) -> None:
    atomic_write_json(Path(expr_dir) / SEALS, seals)
    marker = sealed_marker(expr_dir)
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        marker.write_text(os.path.realpath(expr_dir) + "\n")


def mismatch(path: Path) -> UserError:
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
    seals = load_seals(expr_dir)
    seals[name] = _mac(text.encode("utf-8"))
    save_seals(expr_dir, seals)


def holds_seal(expr_dir: Path, name: str, path: Path) -> bool:
    """Whether `path` holds exactly the bytes sealed under `name` (nothing sealed: False)."""
    seals = load_seals(expr_dir)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return False
    return name in seals and digests.equal(seals[name], _mac(data))


def verify_file(expr_dir: Path, name: str, path: Path) -> None:
    """Raise one line naming `path` when its bytes are not what was sealed under `name` (a missing
    file included); nothing sealed yet: adopted as it is. One read and one HMAC, however large."""
    seals = load_seals(expr_dir)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        data = None
    if name not in seals:
        if data is not None:
            seals[name] = _mac(data)
            save_seals(expr_dir, seals)
        return
    if data is None or not digests.equal(seals[name], _mac(data)):
        raise mismatch(path)


# ---------------------------------------------------------------- best_ckpt/meta.json


def seal_best(expr_dir: Path, meta: dict) -> None:
    """Before a new meta.json is published: it becomes the sealed best, the previous one stays accepted
    (a promotion rolled back by repair leaves the previous best in place)."""
    seals = load_seals(expr_dir)
    seals["best_prev"] = seals.get("best")
    seals["best"] = _mac(_canonical(meta))
    save_seals(expr_dir, seals)


def verify_best(expr_dir: Path, meta: dict | None, path: Path) -> None:
    """The best's meta.json is one the runner wrote (or there is none and none was sealed)."""
    seals = load_seals(expr_dir)
    if "best" not in seals:
        if meta is not None:
            seal_best(expr_dir, meta)
        return
    if meta is None:
        raise mismatch(path)
    meta_mac = _mac(_canonical(meta))
    if not any(s and digests.equal(s, meta_mac) for s in (seals.get("best"), seals.get("best_prev"))):
        raise mismatch(path)


# ---------------------------------------------------------------- decision.json


def _decisions(seals: dict) -> dict:
    """The decision seals kept (none when that entry is damaged: every decision.json is then untrusted)."""
    decisions = seals.get("decisions")
    return dict(decisions) if isinstance(decisions, dict) else {}


def seal_decision(expr_dir: Path, run_id: str, data: dict) -> None:
    seals = load_seals(expr_dir)
    decisions = _decisions(seals)
    decisions[run_id] = _mac(_canonical(data))
    seals["decisions"] = dict(sorted(decisions.items())[-KEPT_DECISIONS:])
    save_seals(expr_dir, seals)


def decision_is_sealed(expr_dir: Path, run_id: str, data: dict) -> bool:
    """Whether decision.json of run_id holds exactly what the runner decided (False: written by someone else)."""
    sealed = _decisions(load_seals(expr_dir)).get(run_id)
    return bool(sealed) and digests.equal(sealed, _mac(_canonical(data)))


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
