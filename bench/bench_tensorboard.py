"""Benchmark: exact last value of one tag from a ~100 MB TensorBoard event file.

Builds the file once (cached in /tmp/arunner-bench-tensorboard/): 200 scalar tags per step, each
step's records written by tensorboard's own EventFileWriter, then the body of
that file tiled to ~100 MB (a valid TFRecord stream is a concatenation of
frames), then a distinct final step written by the real writer again. Times
`arunner.metrics.tensorboard.last_scalars` (median of interleaved repeats) for
  - a tag logged every step (last value in the final step),
  - a tag logged only in the first step (worst case: found by a backward
    byte search over the whole file),
  - a tag that is absent,
and compares with tensorboard's EventAccumulator (all scalars kept) on a
smaller file, since it must read every record.

Run: /work/venv/bin/python bench/bench_tensorboard.py [--mb 100] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "template" / "<<slug>>"))

from arunner.metrics.tensorboard import last_scalars  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "arunner-bench-tensorboard"  # not in the repo: 100 MB
TAGS = [f"train/metric_{i:03d}" for i in range(199)] + ["eval/loss"]
FINAL = {"eval/loss": 0.123456789, "train/metric_000": 42.0}


def _write_steps(logdir: Path, steps: range, extra_first: bool) -> Path:
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    w = EventFileWriter(str(logdir), max_queue_size=10_000, flush_secs=3600)
    for step in steps:
        for i, tag in enumerate(TAGS):  # one tag per Event, like SummaryWriter.add_scalar
            value = FINAL.get(tag, 0.5) if step == -1 else step * 1e-3 + i
            ev = event_pb2.Event(wall_time=1.7e9 + step, step=step)
            ev.summary.value.add(tag=tag, simple_value=value)
            w.add_event(ev)
        if extra_first and step == steps[0]:
            ev = event_pb2.Event(wall_time=1.7e9, step=0)
            ev.summary.value.add(tag="only/at_start", simple_value=7.25)
            w.add_event(ev)
    w.close()
    return next(logdir.glob("events.out.tfevents.*"))


def _frames_after_header(path: Path) -> bytes:
    data = path.read_bytes()
    first = 16 + int.from_bytes(data[:8], "little")  # skip the file_version record
    return data[first:]


def build(mb: int) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / f"events.out.tfevents.1700000000.bench.{mb}mb"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        head = _write_steps(Path(tmp) / "a", range(0, 50), extra_first=True)
        body = _frames_after_header(_write_steps(Path(tmp) / "b", range(50, 100), extra_first=False))
        tail = _frames_after_header(_write_steps(Path(tmp) / "c", range(-1, 0), extra_first=False))
        part = target.with_suffix(".part")
        with open(part, "wb") as fh:
            fh.write(head.read_bytes())
            while fh.tell() < mb * 1_000_000 - len(tail):
                fh.write(body)
            fh.write(tail)
        part.rename(target)
    return target


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def accumulator(path: Path, tag: str) -> float:
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={SCALARS: 0})  # 0 = keep all: exact
    acc.Reload()
    return acc.Scalars(tag)[-1].value


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--small-mb", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    t = time.perf_counter()
    big, small = build(args.mb), build(args.small_mb)
    print(
        f"event files ready in {time.perf_counter() - t:.1f} s: {big.stat().st_size / 1e6:.0f} MB, "
        f"{small.stat().st_size / 1e6:.0f} MB"
    )

    cases = {
        "every step (eval/loss)": ["eval/loss"],
        "only in first step": ["only/at_start"],
        "absent tag": ["no/such/tag"],
    }
    results = {name: [] for name in cases}
    values = {}
    for _ in range(args.repeats):  # interleaved: the machine is noisy
        for name, wanted in cases.items():
            t = time.perf_counter()
            points = last_scalars(big, wanted)
            results[name].append(time.perf_counter() - t)
            values[name] = points.get(wanted[0])
    print(f"\n{'reader':44} {'file':>7} {'median':>10}  value")
    for name in cases:
        v = values[name]
        print(
            f"{'tail-first: ' + name:44} {args.mb:>5}MB {statistics.median(results[name]) * 1e3:>8.2f}ms  "
            f"{v.value if v else None}"
        )
    assert abs(values["every step (eval/loss)"].value - FINAL["eval/loss"]) < 1e-7  # float32 of it
    assert values["only in first step"].value == 7.25 and values["absent tag"] is None

    small_t, small_v = timed(lambda: last_scalars(small, ["eval/loss"]), args.repeats)
    acc_t, acc_v = timed(lambda: accumulator(small, "eval/loss"), 1)
    print(
        f"{'tail-first: every step (eval/loss)':44} {args.small_mb:>5}MB {small_t * 1e3:>8.2f}ms  {small_v['eval/loss'].value}"
    )
    print(f"{'EventAccumulator (keep all scalars), 1 run':44} {args.small_mb:>5}MB {acc_t * 1e3:>8.0f}ms  {acc_v}")


if __name__ == "__main__":
    main()
