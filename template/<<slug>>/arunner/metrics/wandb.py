"""The wandb backend: the final summary of this run's wandb run folder.

Which folders count: the runner exports WANDB_DIR=<run_dir>, so this run's
folders are `<run_dir>/wandb/run-*` / `offline-run-*`. A host that hard-codes
`wandb.init(dir=...)` to the project root writes `<project_root>/wandb/`;
there only folders created after the launch count (the timestamp in the
folder name, local time, and the folder's mtime), never older ones.

What is read: `files/wandb-summary.json` when present (online runs). wandb
0.31 offline runs write no summary json, only the binary `run-<id>.wandb`
record log, in LevelDB log format: a 7-byte header (`:W&B`, 2-byte magic,
1-byte version), then 32 KiB blocks (counted from the file start, header
included) of chunks with a 7-byte header: checksum (uint32 LE: zlib crc32 of
the type byte plus data -- measured on real files; not crc32c), length
(uint16 LE), type (1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST). Less than 7 bytes left
in a block is padding. Reassembled records are `wandb_internal_pb2.Record`
messages: `summary` records update the run summary, `history` records are the
logged rows. The final value of a key is its last summary update, else its
last history value.

Names: wandb splits `wandb.log({"eval": {"loss": x}})` into the key path
["eval", "loss"]; we flatten paths with "/", so that metric is `eval/loss`,
the same name as a flat `wandb.log({"eval/loss": x})` (if a run logs both,
the one written last wins). Internal keys (`_wandb`) are dropped; `_step`,
`_runtime`, `_timestamp` are kept. Non-numeric values (strings, media,
histograms) are skipped; NaN and Infinity are kept as floats.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import struct
import sys
import time
import types
import zlib
from pathlib import Path

BLOCK = 32 * 1024
_FOLDER = re.compile(r"^(?:offline-)?run-(\d{8}_\d{6})-[\w-]+$")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


_record_cls = None


def load_record_class():
    """wandb's generated `Record` class (ImportError without wandb).

    `import wandb` costs about a second (it loads the whole SDK); the generated
    protobuf modules need none of it, so unless wandb is already loaded they are
    imported under a bare temporary `wandb` package that is removed right after.
    If that ever fails (another wandb layout), the ordinary import is used."""
    global _record_cls
    if _record_cls is None and "wandb" not in sys.modules:
        spec = importlib.util.find_spec("wandb")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("No module named 'wandb'")
        before = set(sys.modules)
        stub = types.ModuleType("wandb")
        stub.__path__ = list(spec.submodule_search_locations)
        sys.modules["wandb"] = stub
        try:
            _record_cls = importlib.import_module("wandb.proto.wandb_internal_pb2").Record
        except Exception:
            pass
        finally:
            for name in set(sys.modules) - before:
                if name == "wandb" or name.startswith("wandb."):
                    del sys.modules[name]
    if _record_cls is None:
        from wandb.proto.wandb_internal_pb2 import Record

        _record_cls = Record
    return _record_cls


def read_records(path: Path):
    """Yield the payload of every complete record of a LevelDB-format log; chunks with a bad
    checksum and a torn tail (run killed mid-write) are skipped."""
    data = Path(path).read_bytes()
    if len(data) < 7 or data[:4] != b":W&B":
        return
    pos, parts = 7, None
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:
            pos += left  # block trailer padding
            continue
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        chunk = data[pos + 7 : pos + 7 + length]
        if kind == 0 or len(chunk) < length or zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != crc:
            pos += left  # zero fill or damage: resume at the next block, drop a half-built record
            parts = None
            continue
        pos += 7 + length
        if kind == _FULL:
            parts = None
            yield chunk
        elif kind == _FIRST:
            parts = [chunk]
        elif kind == _MIDDLE and parts is not None:
            parts.append(chunk)
        elif kind == _LAST and parts is not None:
            parts.append(chunk)
            yield b"".join(parts)
            parts = None


def _numeric(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _flatten(prefix: str, value, out: dict[str, float]) -> None:
    """Put numeric leaves of `value` into `out` under `prefix/...`; skip media/histogram dicts."""
    if isinstance(value, dict):
        if "_type" in value:
            return
        for k, v in value.items():
            _flatten(f"{prefix}/{k}" if prefix else str(k), v, out)
    else:
        num = _numeric(value)
        if num is not None and prefix:
            out[prefix] = num


def _item_key(item) -> str:
    return item.key or "/".join(item.nested_key)


def _item_value(item):
    """The Python value of a HistoryItem / SummaryItem (value_json, or a typed field)."""
    if item.value_json:
        try:
            return json.loads(item.value_json)
        except ValueError:
            return None
    kind = item.WhichOneof("value") if "value" in item.DESCRIPTOR.oneofs_by_name else None
    return getattr(item, kind) if kind and kind != "none" else None


def summary_from_records(path: Path, record_cls) -> dict[str, float]:
    """The final run summary rebuilt from a `run-<id>.wandb` file."""
    summary: dict[str, float] = {}
    history: dict[str, float] = {}
    for payload in read_records(path):
        try:
            rec = record_cls.FromString(payload)
        except Exception:  # a damaged record: the others still count
            continue
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            for item in rec.history.item:
                _flatten(_item_key(item), _item_value(item), history)
        elif kind == "summary":
            for item in list(rec.summary.update) + list(rec.summary.remove):
                key = _item_key(item)
                # an update replaces the whole subtree at its key
                for old in [k for k in summary if k == key or k.startswith(key + "/")]:
                    del summary[old]
            for item in rec.summary.update:
                _flatten(_item_key(item), _item_value(item), summary)
    merged = {**history, **summary}
    return {k: v for k, v in merged.items() if k != "_wandb" and not k.startswith("_wandb/")}


def _summary_json(folder: Path) -> dict[str, float] | None:
    path = folder / "files" / "wandb-summary.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    out: dict[str, float] = {}
    if isinstance(data, dict):
        _flatten("", {k: v for k, v in data.items() if k != "_wandb"}, out)
    return out


def _created(folder: Path) -> float:
    m = _FOLDER.match(folder.name)
    return time.mktime(time.strptime(m.group(1), "%Y%m%d_%H%M%S")) if m else 0.0


def run_folders(run_dir: Path, project_root: Path, started_at: float) -> list[Path]:
    """This run's wandb run folders, newest first."""
    own = Path(run_dir) / "wandb"
    shared = Path(project_root) / "wandb"
    found = []
    for parent, must_be_new in ((own, False), (shared, True)):
        if not parent.is_dir() or (must_be_new and parent.resolve() == own.resolve()):
            continue
        for folder in parent.iterdir():
            if folder.is_symlink() or not folder.is_dir() or not _FOLDER.match(folder.name):
                continue  # `latest-run` is a symlink to some other folder
            try:
                mtime = folder.stat().st_mtime
            except OSError:
                continue
            # the name holds the creation second (local time, truncated)
            if must_be_new and (_created(folder) < started_at - 1 or mtime < started_at):
                continue
            found.append((_created(folder), mtime, folder))
    return [f for _, _, f in sorted(found, reverse=True)]


def read_folder(folder: Path, wanted: list[str]) -> dict[str, float]:
    """Metrics of one run folder: the summary json, completed from the binary log when it
    lacks a wanted metric (offline runs have no json at all)."""
    metrics = _summary_json(folder) or {}
    if all(w in metrics for w in wanted):
        return metrics
    for log in sorted(folder.glob("run-*.wandb")):
        for k, v in summary_from_records(log, load_record_class()).items():
            metrics.setdefault(k, v)
    return metrics


def extract_wandb(cfg, run_dir: Path, started_at: float, wanted: list[str]):
    """(metrics, note): metrics None when this run left no wandb folder, {} when wandb is missing."""
    folders = run_folders(run_dir, cfg.project_root, started_at)
    if not folders:
        return None, "no wandb run folder from this run"
    first = None
    for folder in folders:
        try:
            metrics = read_folder(folder, wanted)
        except ImportError:
            return {}, "wandb is not importable in this environment (needed to read offline runs)"
        except OSError:
            continue
        if first is None:
            first = metrics
        if wanted and wanted[0] in metrics:
            return metrics, ""
    return (first or {}), ""
