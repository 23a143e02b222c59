"""Metric backends on real artifacts: SummaryWriter event files, real wandb offline runs, logs."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "template" / "<<slug>>"))

from metrics_support import make_cfg, make_run_dir  # noqa: E402

from arunner.metrics import DEFAULT_LOG_REGEX, Extraction, extract  # noqa: E402
from arunner.metrics import tensorboard as tbmod  # noqa: E402
from arunner.metrics import wandb as wbmod  # noqa: E402


@pytest.fixture
def proj(tmp_path) -> tuple[Path, Path]:
    return make_run_dir(tmp_path)


# ---------------------------------------------------------------- tensorboard


def write_events(logdir: Path, events: list[tuple[int, dict]], style: str = "simple") -> Path:
    """Write events with tensorboard's own EventFileWriter; style picks how each scalar is stored."""
    from tensorboard.compat.proto import event_pb2, tensor_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(logdir))
    for step, scalars in events:
        ev = event_pb2.Event(wall_time=time.time(), step=step)
        for tag, value in scalars.items():
            if style == "simple":
                ev.summary.value.add(tag=tag, simple_value=value)
            elif style == "tensor_content":  # what TF2's C++ summary writer stores
                ev.summary.value.add(
                    tag=tag, tensor=tensor_pb2.TensorProto(dtype=2, tensor_content=struct.pack("<d", value))
                )
        writer.add_event(ev)
    writer.close()
    return max(logdir.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime_ns)


def test_summary_writer_scalars_and_tensor_styles(proj):
    import tensorboard.summary as tbsummary
    from torch.utils.tensorboard import SummaryWriter

    root, run_dir = proj
    started = time.time() - 1
    w = SummaryWriter(str(root / "tb" / "torch"))
    for step in range(5):
        w.add_scalar("eval/loss", 1.0 / (step + 1), step)  # simple_value
        w.add_scalar("eval/acc", step / 10, step, new_style=True)  # tensor float_val
        w.add_scalar("eval/ppl", step * 1.5, step, new_style=True, double_precision=True)  # double_val
    w.add_histogram("weights", __import__("numpy").arange(10.0), 4)  # not a scalar: skipped
    w.add_text("notes", "hello", 4)
    w.close()
    tw = tbsummary.Writer(str(root / "tb" / "tbwriter"))  # tensorboard's own TF2-style writer
    tw.add_scalar("tb2/loss", 0.375, 7)
    tw.close()
    write_events(root / "tb" / "content", [(1, {"tf2/loss": 2.0}), (2, {"tf2/loss": 0.0625})], "tensor_content")

    cfg = make_cfg(root, metric_backend="tensorboard", tb_events_glob="tb/**/*tfevents*")
    out = extract(cfg, run_dir, started, ["eval/loss", "eval/acc", "eval/ppl", "tb2/loss", "tf2/loss"])
    assert out.source == "tensorboard" and out.note == ""
    assert out.metrics["eval/loss"] == pytest.approx(0.2, rel=1e-7)  # float32 storage
    assert out.metrics["eval/acc"] == pytest.approx(0.4, rel=1e-7)
    assert out.metrics["eval/ppl"] == 6.0 and out.metrics["tb2/loss"] == 0.375 and out.metrics["tf2/loss"] == 0.0625
    assert "weights" not in out.metrics and not any(k.startswith("notes") for k in out.metrics)


def test_partial_last_record_and_zero_tail(proj):
    root, run_dir = proj
    started = time.time() - 1
    f = write_events(root / "tb", [(s, {"eval/loss": float(s)}) for s in range(10)])
    data = f.read_bytes()
    f.write_bytes(data[:-7])  # the last record cut mid-payload: a writer still busy
    assert tbmod.last_scalars(f, ["eval/loss"])["eval/loss"].value == 8.0
    f.write_bytes(data + b"\0" * 100)  # a crash left zeros after the last record
    assert tbmod.last_scalars(f, ["eval/loss"])["eval/loss"].value == 9.0
    cfg = make_cfg(root, metric_backend="tensorboard", tb_events_glob="tb")  # a folder works as a glob
    assert extract(cfg, run_dir, started, ["eval/loss"]).metrics["eval/loss"] == 9.0


def test_only_files_of_this_run_count(proj):
    root, run_dir = proj
    logdir = root / "tb"
    old = write_events(logdir / "old", [(1, {"eval/loss": 0.01, "old/only": 5.0})])
    # an earlier run's file: its name carries its creation time, its mtime is old
    old_ts = int(time.time()) - 100
    renamed = old.with_name(f"events.out.tfevents.{old_ts}.host.1.0")
    old.rename(renamed)
    os.utime(renamed, (old_ts, old_ts))
    # a file with a fresh name but an old mtime does not count either
    stale = write_events(logdir / "stale", [(1, {"eval/loss": 0.02})])
    os.utime(stale, (old_ts, old_ts))
    started = time.time() - 1
    a = write_events(logdir / "a", [(1, {"eval/loss": 0.5, "acc": 0.1})])
    b = write_events(logdir / "b", [(2, {"eval/loss": 0.25})])  # written later: its value is newer
    cfg = make_cfg(root, metric_backend="tensorboard", tb_events_glob="tb/**/events.out.tfevents.*")
    out = extract(cfg, run_dir, started, ["eval/loss", "old/only"])
    assert out.metrics == {"eval/loss": 0.25, "acc": pytest.approx(0.1)} and out.source == "tensorboard"
    assert {p.name for p in tbmod.find_event_files(root, cfg.tb_events_glob, started)[0]} == {a.name, b.name}


def test_glob_never_leaves_the_project(proj, tmp_path_factory):
    root, run_dir = proj
    outside = tmp_path_factory.mktemp("outside")
    started = time.time() - 1
    write_events(outside, [(1, {"eval/loss": 0.5})])
    (root / "link").symlink_to(outside)
    (run_dir / "run.log").write_text("eval/loss=0.75\n")
    for pattern in ["link/*tfevents*", f"../{outside.name}/*tfevents*", str(outside / "*tfevents*")]:
        out = extract(
            make_cfg(root, metric_backend="tensorboard", tb_events_glob=pattern), run_dir, started, ["eval/loss"]
        )
        assert out.metrics == {"eval/loss": 0.75} and out.source == "log", pattern
        assert "took it from run.log" in out.note


def test_tail_first_finds_exact_last_values_anywhere(tmp_path):
    """Tags at the start, in the middle and at the end of a multi-MB file, and a torn last record.
    (tensorboard's own loader needs ~10 s per MB here, so the truth comes from what was written.)"""
    head = write_events(tmp_path / "h", [(0, {"early/only": 7.25, "eval/loss": 3.0})])
    body = write_events(tmp_path / "b", [(s, {f"t{i}": s + i / 8 for i in range(20)}) for s in range(1, 200)])
    tail = write_events(tmp_path / "t", [(200, {"eval/loss": 0.5}), (201, {"t3": -1.0})])

    def frames(p):  # records after the file_version record
        d = p.read_bytes()
        return d[16 + int.from_bytes(d[:8], "little") :]

    big = tmp_path / "events.out.tfevents.1.host"
    big.write_bytes(head.read_bytes() + frames(body) * 40 + frames(tail) + frames(body)[:50])
    assert big.stat().st_size > 2_000_000
    got = tbmod.last_scalars(big, ["early/only", "eval/loss", "t0", "t19", "absent"])
    assert {t: got[t].value for t in ("early/only", "eval/loss", "t0", "t19", "t3")} == {
        "early/only": 7.25,
        "eval/loss": 0.5,
        "t0": 199.0,
        "t19": 199 + 19 / 8,
        "t3": -1.0,
    }
    assert got["eval/loss"].step == 200 and got["early/only"].step == 0 and "absent" not in got


def test_crc32c_matches_tensorboard():
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    for data in (b"", b"a", b"12345678", bytes(range(256)) * 3):
        assert tbmod.masked_crc32c(data) == masked_crc32c(data)


# ---------------------------------------------------------------- wandb

WANDB_SCRIPT = """
import json, math, sys, wandb
run = wandb.init(project="arunner-test")
for i in range(5):
    wandb.log({"eval/loss": 1.0 / (i + 1), "train": {"acc": i / 10}, "text": "not a number"})
wandb.log({"eval/nan": math.nan})
run.summary["best/loss"] = 0.125
run.summary["nested"] = {"a": {"b": 3}}
expected = {k: v for k, v in dict(run.summary).items() if not k.startswith("_")}
run.finish()
json.dump(expected, open(sys.argv[1], "w"), default=str)
"""


@pytest.fixture(scope="session")
def wandb_run(tmp_path_factory) -> tuple[Path, dict, float]:
    """One real offline wandb run written into a run folder (WANDB_DIR), as the runner launches it."""
    base = tmp_path_factory.mktemp("wandb")
    script, expected = base / "w.py", base / "expected.json"
    script.write_text(WANDB_SCRIPT)
    run_dir = base / "runs" / "r0001"
    run_dir.mkdir(parents=True)
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(run_dir),
        "WANDB_SILENT": "true",
        "WANDB_DISABLE_GIT": "true",
    }
    started = time.time()
    subprocess.run([sys.executable, str(script), str(expected)], env=env, check=True, timeout=120, capture_output=True)
    return run_dir, json.loads(expected.read_text()), started


def copy_run(wandb_run, root: Path, run_dir: Path) -> Path:
    src = next((wandb_run[0] / "wandb").glob("offline-run-*"))
    dest = run_dir / "wandb" / src.name
    shutil.copytree(src, dest)
    return dest


def test_wandb_offline_run_without_summary_json(proj, wandb_run):
    root, run_dir = proj
    folder = copy_run(wandb_run, root, run_dir)
    assert not (folder / "files" / "wandb-summary.json").exists()  # wandb 0.31 offline
    out = extract(make_cfg(root, metric_backend="wandb"), run_dir, wandb_run[2], ["eval/loss", "best/loss"])
    expected = wandb_run[1]
    assert out.source == "wandb" and out.note == ""
    assert out.metrics["eval/loss"] == expected["eval/loss"] == 0.2  # the last logged value
    assert out.metrics["best/loss"] == 0.125 and out.metrics["nested/a/b"] == 3.0
    assert out.metrics["train/acc"] == 0.4  # {"train": {"acc": x}} flattens to train/acc
    assert math.isnan(out.metrics["eval/nan"]) and "text" not in out.metrics
    assert not any(k.startswith("_wandb") for k in out.metrics)


def test_wandb_torn_record_log_and_summary_json(proj, wandb_run):
    root, run_dir = proj
    folder = copy_run(wandb_run, root, run_dir)
    log = next(folder.glob("run-*.wandb"))
    data = log.read_bytes()
    log.write_bytes(data[: len(data) * 2 // 3] + b"\x07garbage")  # killed mid-write
    metrics = wbmod.read_folder(folder, ["eval/loss"])
    assert 0.2 <= metrics["eval/loss"] <= 1.0  # an earlier logged value, no crash
    (folder / "files" / "wandb-summary.json").write_text(
        json.dumps({"eval": {"loss": 0.0625}, "_wandb": {"runtime": 3}, "img": {"_type": "image-file"}})
    )
    out = extract(make_cfg(root, metric_backend="wandb"), run_dir, 0.0, ["eval/loss"])
    assert out.metrics == {"eval/loss": 0.0625}


def test_wandb_project_root_folders_must_be_new(proj, wandb_run):
    root, run_dir = proj
    src = next((wandb_run[0] / "wandb").glob("offline-run-*"))
    now = time.time()
    old_name = time.strftime("offline-run-%Y%m%d_%H%M%S-old1", time.localtime(now - 3600))
    old = root / "wandb" / old_name
    shutil.copytree(src, old)
    os.utime(old, (now - 3600, now - 3600))
    (old / "files" / "wandb-summary.json").write_text(json.dumps({"eval/loss": 0.001}))
    (run_dir / "run.log").write_text("eval/loss=0.5\n")
    cfg = make_cfg(root, metric_backend="wandb")
    out = extract(cfg, run_dir, now - 1, ["eval/loss"])
    assert out.metrics == {"eval/loss": 0.5} and out.source == "log"  # the old folder is not this run's
    assert "no wandb run folder from this run" in out.note
    new = root / "wandb" / time.strftime("offline-run-%Y%m%d_%H%M%S-new1", time.localtime(now))
    shutil.copytree(src, new)  # a host with wandb.init(dir=project_root), launched at `now - 1`
    os.utime(new)  # copytree kept the source's mtime; a new folder's is now
    out = extract(cfg, run_dir, now - 1, ["eval/loss"])
    assert out.metrics["eval/loss"] == 0.2 and out.source == "wandb"


def test_wandb_import_is_lazy_and_leaves_no_stub(proj, wandb_run):
    """The runner never imports tensorboard/wandb for the log backend; reading an offline run loads only
    wandb's protobuf modules and leaves `import wandb` working normally afterwards."""
    root, run_dir = proj
    copy_run(wandb_run, root, run_dir)
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(REPO / "template" / "<<slug>>")!r})
        from pathlib import Path
        from arunner.metrics import extract
        from arunner.metrics.wandb import run_folders, read_folder
        assert "tensorboard" not in sys.modules and "wandb" not in sys.modules
        folder = run_folders(Path({str(run_dir)!r}), Path({str(root)!r}), 0.0)[0]
        assert read_folder(folder, ["eval/loss"])["eval/loss"] == 0.2
        assert "wandb" not in sys.modules and "tensorboard" not in sys.modules
        import wandb
        from wandb.proto import wandb_internal_pb2
        assert hasattr(wandb, "init") and wandb_internal_pb2.Record
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_missing_libraries_fall_back_to_log_with_note(proj, wandb_run):
    root, run_dir = proj
    copy_run(wandb_run, root, run_dir)
    write_events(root / "tb", [(1, {"eval/loss": 0.5})])
    (run_dir / "run.log").write_text("eval/loss=0.75\n")
    code = textwrap.dedent(f"""
        import sys, json; sys.path.insert(0, {str(REPO / "template" / "<<slug>>")!r})
        sys.modules["wandb"] = None; sys.modules["tensorboard"] = None  # as if not installed
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from metrics_support import make_cfg
        from arunner.metrics import extract
        out = []
        for backend in ("wandb", "tensorboard"):
            r = extract(make_cfg(Path({str(root)!r}), metric_backend=backend, tb_events_glob="tb/*"),
                        Path({str(run_dir)!r}), 0.0, ["eval/loss"])
            out.append([r.metrics, r.source, r.note])
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    (wb, tb) = json.loads(proc.stdout)
    assert wb[:2] == [{"eval/loss": 0.75}, "log"] and "wandb is not importable" in wb[2]
    assert tb[:2] == [{"eval/loss": 0.75}, "log"] and "tensorboard is not importable" in tb[2]


# ---------------------------------------------------------------- auto and fallback


def test_auto_order(proj, wandb_run):
    root, run_dir = proj
    started = time.time() - 1
    (run_dir / "run.log").write_text("eval/loss=0.75\nacc=0.9\n")
    cfg = make_cfg(root, metric_backend="auto")
    assert extract(cfg, run_dir, started, ["eval/loss"]) == Extraction({"eval/loss": 0.75}, "log", "")
    write_events(root / "runs" / "exp", [(1, {"eval/loss": 0.5})])  # found without a glob in auto mode
    out = extract(cfg, run_dir, started, ["eval/loss", "acc"])
    assert out.source == "tensorboard" and out.metrics["eval/loss"] == 0.5 and out.note == ""
    copy_run(wandb_run, root, run_dir)
    out = extract(cfg, run_dir, started, ["eval/loss"])
    assert out.source == "wandb" and out.metrics["eval/loss"] == 0.2


def test_backend_without_primary_falls_back_to_log(proj):
    root, run_dir = proj
    started = time.time() - 1
    write_events(root / "tb", [(1, {"acc": 0.5})])
    (run_dir / "run.log").write_text("eval/loss=0.75\nacc=0.125\n")
    for backend in ("tensorboard", "auto"):
        out = extract(
            make_cfg(root, metric_backend=backend, tb_events_glob="tb/*"), run_dir, started, ["eval/loss", "acc"]
        )
        assert out.source == "log" and out.metrics == {"eval/loss": 0.75, "acc": 0.5}  # tensorboard's acc kept
        assert "no 'eval/loss'" in out.note and "took it from run.log" in out.note
    (run_dir / "run.log").write_text("nothing here\n")
    out = extract(make_cfg(root, metric_backend="tensorboard", tb_events_glob="tb/*"), run_dir, started, ["eval/loss"])
    assert out.source == "tensorboard" and out.metrics == {"acc": 0.5} and "eval/loss" in out.note
    out = extract(make_cfg(root, metric_backend="wandb"), run_dir, started, ["eval/loss"])
    assert out == Extraction({}, "none", out.note) and "no wandb run folder" in out.note


def test_default_regex_is_a_plain_string():
    assert isinstance(DEFAULT_LOG_REGEX, str) and "{name}" in DEFAULT_LOG_REGEX
