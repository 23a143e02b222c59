"""The tensorboard backend: exact last value of scalar tags in this run's event files.

An event file is a TFRecord stream: uint64 length (LE), uint32 masked crc32c
of those 8 bytes, the payload (an `Event` protobuf), uint32 masked crc32c of
the payload. Reading a 100 MB file forward in Python takes seconds, so the
search starts at the end:

1. Tail window: find a record boundary a few KiB before EOF (an offset whose
   8 length bytes carry a matching crc and whose chain of following headers
   reaches EOF), decode every record from there on. Every tag seen there gets
   its exact last value. A partial last record (file still being written) and
   a zero-filled tail (crash) are ignored; the window doubles until it holds a
   complete record.
2. Wanted tags still missing: a tag is stored in the payload as the protobuf
   field `Summary.Value.tag` (byte 0x0a, varint length, the tag bytes), so
   `rfind` of that encoding over the file (C speed) points at the last record
   that can hold the tag; find that record's boundary just before it, decode
   it, repeat below it until found or the file start is reached.

Values come from `simple_value` or from a one-element tensor (`float_val`,
`double_val`, integer fields, or `tensor_content`: TF2 / new-style summaries).
Protobufs are decoded with tensorboard's own generated classes, imported only
when this backend runs.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from pathlib import Path
from typing import NamedTuple

TAIL_WINDOW = 2 << 10  # most runs log their metrics at the very end; a few dozen records
MTIME_SLACK_S = 0.05  # file mtimes come from a coarse kernel clock, a few ms behind time.time()
SKIP_DIRS = {"node_modules", "__pycache__", "site-packages", "venv", "env", "wandb", "mlruns"}
_NAME_TS = re.compile(r"tfevents\.(\d+)")
_NONZERO = re.compile(rb"[^\0]")


class Point(NamedTuple):
    wall_time: float
    step: int
    value: float


# --- crc32c (Castagnoli), table-driven: only 8-byte headers and small payloads are checked
def _make_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# --- framing
_BAD, _PARTIAL = "bad", "partial"


def _header(mm, size: int, pos: int):
    """Payload length of the record at `pos`, _PARTIAL if it runs past EOF, _BAD if the crc fails."""
    if pos + 12 > size:
        return _PARTIAL
    head = mm[pos : pos + 12]
    if masked_crc32c(head[:8]) != int.from_bytes(head[8:], "little"):
        return _BAD
    length = int.from_bytes(head[:8], "little")
    return _PARTIAL if pos + 16 + length > size else length


def _chain(mm, size: int, pos: int, stop: int):
    """Records (offset, length) from `pos` while offset <= stop, and how the walk ended:
    'end' (reached `stop` or EOF cleanly), _PARTIAL (a record runs past EOF) or _BAD."""
    records = []
    while pos <= stop and pos < size:
        length = _header(mm, size, pos)
        if isinstance(length, str):
            return records, length
        records.append((pos, length))
        pos += 16 + length
    return records, "end"


def _candidates(mm, start: int, last: int):
    """Offsets in [start, last] where a record could begin: its length fits in 32 bits, so
    bytes 4..7 are zero, and is not 0 (an Event always has a wall_time). `find` and a
    regex skip everything else, zero runs included, at C speed."""
    pos = start
    while pos <= last:
        hit = mm.find(b"\0\0\0\0", pos + 4, last + 8)
        if hit < 0:
            return
        if mm[hit - 4 : hit] == b"\0\0\0\0":  # inside a run of zeros: resume after it
            m = _NONZERO.search(mm, hit, last + 8)
            if m is None:
                return
            pos = m.start() - 4
            continue
        yield hit - 4
        pos = hit - 3


def _data_end(mm, size: int) -> int:
    """Where trailing zeros begin (a crash can leave a zero-filled tail), else EOF. Only
    positions the tail window; records are still read up to EOF."""
    end = size
    while end > 0:
        start = max(0, end - (1 << 20))
        kept = len(mm[start:end].rstrip(b"\0"))
        if kept:
            return start + kept
        end = start
    return 0


def _payload(mm, pos: int, length: int) -> bytes | None:
    """The record's payload, None when its crc does not match (a false boundary)."""
    data = mm[pos + 12 : pos + 12 + length]
    crc = int.from_bytes(mm[pos + 12 + length : pos + 16 + length], "little")
    return data if masked_crc32c(data) == crc else None


# --- values
_TENSOR_FORMATS = {
    1: "<f",
    2: "<d",
    3: "<i",
    4: "<B",
    5: "<h",
    6: "<b",
    9: "<q",
    10: "<?",
    17: "<H",
    19: "<e",
    22: "<I",
    23: "<Q",
}
_TENSOR_FIELDS = ("float_val", "double_val", "int_val", "int64_val", "bool_val", "uint32_val", "uint64_val")


def _tensor_scalar(t) -> float | None:
    """The value of a one-element numeric tensor, else None (histograms, text, images)."""
    n = 1
    for dim in t.tensor_shape.dim:
        n *= dim.size
    if n != 1:
        return None
    if t.tensor_content:
        if t.dtype == 14:  # bfloat16: the high half of a float32
            return struct.unpack("<f", b"\0\0" + t.tensor_content[:2])[0]
        fmt = _TENSOR_FORMATS.get(t.dtype)
        if fmt is None or len(t.tensor_content) != struct.calcsize(fmt):
            return None
        return float(struct.unpack(fmt, t.tensor_content)[0])
    if len(t.half_val) == 1:  # float16 / bfloat16 bits stored in an int field
        bits = t.half_val[0] & 0xFFFF
        if t.dtype == 14:
            return struct.unpack("<f", struct.pack("<I", bits << 16))[0]
        return struct.unpack("<e", struct.pack("<H", bits))[0]
    for field in _TENSOR_FIELDS:
        vals = getattr(t, field)
        if len(vals) == 1:
            return float(vals[0])
    return None


def _decode(event_cls, payload: bytes, out: dict[str, Point], only: set[str] | None = None) -> None:
    """Put every scalar of one Event into `out` (a later call overwrites an earlier one)."""
    try:
        event = event_cls.FromString(payload)
    except Exception:  # a damaged record: skip it, like tensorboard does
        return
    for v in event.summary.value:
        if only is not None and v.tag not in only:
            continue
        kind = v.WhichOneof("value")
        value = v.simple_value if kind == "simple_value" else _tensor_scalar(v.tensor) if kind == "tensor" else None
        if value is not None:
            out[v.tag] = Point(event.wall_time, event.step, float(value))


def _tag_bytes(tag: str) -> bytes:
    """How `Summary.Value.tag` is encoded: field 1, wire type 2, varint length, UTF-8 bytes."""
    raw, n, varint = tag.encode("utf-8"), len(tag.encode("utf-8")), bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        varint.append(byte | (0x80 if n else 0))
        if not n:
            return b"\x0a" + bytes(varint) + raw


def last_scalars(path: Path, wanted: list[str] | set[str], event_cls=None) -> dict[str, Point]:
    """Exact last Point per tag: every tag in the tail window plus every wanted tag anywhere."""
    if event_cls is None:
        from tensorboard.compat.proto.event_pb2 import Event as event_cls
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 16:
            return {}
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    with mm:
        found: dict[str, Point] = {}
        # 1. the tail window
        window, tail_start, data_end = TAIL_WINDOW, None, _data_end(mm, size)
        while tail_start is None:
            start = max(0, data_end - window)
            for pos in _candidates(mm, start, data_end):
                # A chain may end in a partial record (still being written) or in damage
                # (a crash can leave zeros at the end): the complete records before count.
                records, _ = _chain(mm, size, pos, size)
                payloads = [_payload(mm, p, n) for p, n in records]
                if payloads and payloads[0] is not None:
                    tail_start = pos
                    for payload in payloads:
                        if payload is None:
                            break
                        _decode(event_cls, payload, found)
                    break
            if tail_start is None and start == 0:
                return found  # no valid record at all
            window *= 2
        # 2. wanted tags older than the tail window: jump to their last encoding
        missing = {t: _tag_bytes(t) for t in wanted if t not in found}
        search_end = tail_start
        while missing and search_end > 0:
            hit = max(mm.rfind(enc, 0, search_end) for enc in missing.values())
            if hit < 0:
                break
            search_end = _decode_around(mm, size, hit, event_cls, missing, found)
            for tag in [t for t in missing if t in found]:
                del missing[tag]
        return found


def _decode_around(mm, size: int, hit: int, event_cls, only: dict[str, bytes], found: dict[str, Point]) -> int:
    """Decode the record holding byte `hit` and the records before it back to the boundary found
    for it, keeping tags of `only` (tag -> encoding) not yet in `found` (those are newer).
    Returns that boundary: the search continues below it."""
    window, tags = TAIL_WINDOW, set(only)
    while True:
        start = max(0, hit - window)
        for pos in _candidates(mm, start, hit):
            records, how = _chain(mm, size, pos, hit)
            if how != "end" or not records or records[-1][0] + 16 + records[-1][1] <= hit:
                continue  # broken chain, or it stops short of the hit: not a real boundary
            values: dict[str, Point] = {}
            for p, n in records:
                body = mm[p + 12 : p + 12 + n]
                if not any(enc in body for enc in only.values()):
                    continue
                payload = _payload(mm, p, n)
                if payload is None:
                    break  # a false boundary that happened to chain up
                _decode(event_cls, payload, values, tags)
            else:
                for tag, point in values.items():
                    found.setdefault(tag, point)
                return pos
        if start == 0:
            return hit  # no boundary found for this hit: skip it
        window *= 4


def _fresh(path: Path, started_at: float) -> bool:
    """Written by this run: the creation time in the name and the mtime are not older than the launch."""
    m = _NAME_TS.search(path.name)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return False
    if m and int(m.group(1)) < started_at - 1:  # the name's timestamp is truncated to seconds
        return False
    return mtime >= started_at - MTIME_SLACK_S


def find_event_files(root: Path, pattern: str, started_at: float, extra_dirs=()) -> tuple[list[Path], str]:
    """Event files of this run matching `pattern` under `root` (never outside it), and a note.

    An empty pattern walks the project (skipping hidden folders, virtualenvs, tracker
    folders) plus `extra_dirs` (the run folder, which the runner owns); a pattern
    matching a folder means the event files in it.
    """
    root = Path(root).resolve()
    allowed = [root, *(Path(d).resolve() for d in extra_dirs)]
    matches: list[Path] = []
    if pattern:
        if Path(pattern).is_absolute():
            return [], f"tb_events_glob {pattern!r} must be relative to the project root"
        try:
            matches = list(root.glob(pattern))
        except (ValueError, NotImplementedError, OSError) as exc:
            return [], f"tb_events_glob {pattern!r} is unusable ({exc})"
    else:
        for top in allowed:
            for here, subdirs, files in os.walk(top):
                subdirs[:] = [d for d in subdirs if not d.startswith(".") and d not in SKIP_DIRS]
                matches.extend(Path(here, f) for f in files if "tfevents" in f)
    files, outside = set(), False
    for m in matches:
        inner = m.rglob("*tfevents*") if m.is_dir() else [m]
        for f in inner:
            real = f.resolve()
            if not any(top == real or top in real.parents for top in allowed):
                outside = True
                continue
            if "tfevents" in real.name and real.is_file() and _fresh(real, started_at):
                files.add(real)
    note = f"ignored event files outside the project root matched by {pattern!r}" if outside else ""
    return sorted(files), note


def extract_tensorboard(cfg, run_dir: Path, started_at: float, wanted: list[str]):
    """(metrics, note): metrics None when this run wrote no event file, {} when tensorboard is missing."""
    pattern = getattr(cfg, "tb_events_glob", "") or ""
    files, note = find_event_files(cfg.project_root, pattern, started_at, extra_dirs=[Path(run_dir)])
    if not files:
        where = f"matching {pattern!r}" if pattern else "under the project"
        return None, note or f"no event files written by this run {where}"
    try:
        from tensorboard.compat.proto.event_pb2 import Event
    except ImportError:
        return {}, "tensorboard is not importable in this environment"
    best: dict[str, Point] = {}
    for f in files:
        try:
            points = last_scalars(f, wanted, Event)
        except (OSError, ValueError):
            continue  # vanished or unreadable: the other files still count
        for tag, p in points.items():
            # several files (restarts, one writer per rank): the newest point wins
            if tag not in best or (p.wall_time, p.step) >= (best[tag].wall_time, best[tag].step):
                best[tag] = p
    return {tag: p.value for tag, p in best.items()}, note
