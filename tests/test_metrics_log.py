"""Metric values read from run.log (the log backend and its regex) and from the user's own code."""

from __future__ import annotations

import json
import math
import textwrap
import tracemalloc

import pytest
from metrics_support import make_cfg, make_run_dir

from arunner.metrics import Extraction, extract, logregex


@pytest.fixture
def proj(tmp_path):
    return make_run_dir(tmp_path)


# ---------------------------------------------------------------- log regex


def log_value(text: str, name: str = "eval/loss", regex: str = "") -> float | None:
    patterns, _, _ = logregex.build_patterns(regex, [name])
    return logregex._last_value(patterns[name], text.replace("\r", "\n"))


@pytest.mark.parametrize(
    "line,expected",
    [
        ("eval/loss=0.5", 0.5),
        ("step 3 eval/loss: -1e-3", -1e-3),
        ("eval/loss = 3.", 3.0),
        ("{'eval/loss': 0.25, 'epoch': 1.0}", 0.25),
        ('{"eval/loss": 1.5E+2}', 150.0),
        ("eval/loss=inf", math.inf),
        ("eval/loss=-inf", -math.inf),
        ("eval/loss=np.float64(0.125)", 0.125),
        ("eval/loss_ema=1", None),
        ("my_eval/loss=1", None),
        ("train/eval/loss=1", None),
        ("eval/loss=0.5x", None),
    ],
)
def test_default_regex_lines(line, expected):
    assert log_value(line) == expected


def test_default_regex_nan_any_case():
    for text in ("eval/loss=nan", "eval/loss: NaN", "eval/loss=-NAN"):
        assert math.isnan(log_value(text))


def test_hf_trainer_dict_print():
    text = (
        "{'loss': 2.1, 'grad_norm': 1.3, 'learning_rate': 5e-05, 'epoch': 0.5}\n"
        "{'eval_loss': 1.875, 'eval_runtime': 0.1, 'eval_samples_per_second': 900.1, 'epoch': 1.0}\n"
    )
    assert log_value(text, "eval_loss") == 1.875
    assert log_value(text, "loss") == 2.1  # 'eval_loss' does not count as 'loss'
    assert log_value(text, "learning_rate") == 5e-05


def test_progress_bar_and_ranks(proj):
    root, run_dir = proj
    (run_dir / "run.log").write_bytes(
        b"epoch 1: 10%|#  | loss=3.0\r epoch 1: 50%|### | loss=2.5\r epoch 1: 100%|#####| loss=2.25\n"
        b"[rank0]: eval/loss=0.75\n[rank1]: eval/loss=0.70\n"  # several ranks: the last printed wins
        b"\xff\xfe broken utf-8 \n"
    )
    cfg = make_cfg(root, log_metric_regex=r"^\s*epoch \d+: 100%.*loss=(\S+)$")  # needs \r as a line break
    out = extract(cfg, run_dir, 0.0, ["loss", "eval/loss"])
    assert out == Extraction({"loss": 2.25, "eval/loss": 0.70}, "log", "")


def test_a_metric_name_without_a_readable_value_says_what_the_log_holds(proj):
    """Two ranks printing at once once left `eval/loss=0.05eval/loss=0.05`: say so, not `no 'eval/loss'`."""
    root, run_dir = proj
    (run_dir / "run.log").write_bytes(b"W torchrun banner\neval/loss=0.05eval/loss=0.05\n\nstep 3\n")
    out = extract(make_cfg(root), run_dir, 0.0, ["eval/loss"])
    assert out.metrics == {} and out.source == "none"
    assert "'eval/loss' is in run.log but not as `eval/loss=<number>`" in out.note
    assert "eval/loss=0.05eval/loss=0.05" in out.note and "no 'eval/loss'" not in out.note
    (run_dir / "run.log").write_bytes(b"train/loss=0.1\n")  # the name is absent: the plain reason
    assert "no 'eval/loss' in" in extract(make_cfg(root), run_dir, 0.0, ["eval/loss"]).note


def test_user_regex_with_and_without_name(proj):
    root, run_dir = proj
    (run_dir / "run.log").write_text("VAL eval/loss 0.4\nVAL acc 0.9\nacc=0.8\n")
    # with {name}: every metric uses it
    out = extract(make_cfg(root, log_metric_regex=r"VAL {name} (\S+)"), run_dir, 0.0, ["eval/loss", "acc"])
    assert out.metrics == {"eval/loss": 0.4, "acc": 0.9}
    # without: the primary only; constraints use the default
    out = extract(make_cfg(root, log_metric_regex=r"VAL eval/loss (\S+)"), run_dir, 0.0, ["eval/loss", "acc"])
    assert out.metrics == {"eval/loss": 0.4, "acc": 0.8}
    # unusable regex: a note, the default is used
    out = extract(make_cfg(root, log_metric_regex=r"VAL (\w+) (\S+)"), run_dir, 0.0, ["acc"])
    assert out.metrics == {"acc": 0.8} and "exactly one group" in out.note


def test_huge_sparse_log_reads_a_bounded_tail(tmp_path):
    log = tmp_path / "run.log"
    with open(log, "wb") as fh:
        fh.write(b"eval/loss=9.0\n")  # far beyond the cap: never reached
        fh.truncate(1 << 30)  # 1 GiB, sparse
        fh.seek(0, 2)
        fh.write(b"\nacc=0.5\neval/loss=0.25\n")
    patterns, literals, _ = logregex.build_patterns("", ["eval/loss", "acc"])
    found, read = logregex.scan_log(log, patterns, "eval/loss", literals)
    assert found == {"eval/loss": 0.25, "acc": 0.5} and read <= logregex.FIRST_CHUNK

    patterns, literals, _ = logregex.build_patterns("", ["missing", "acc"])
    tracemalloc.start()
    found, read = logregex.scan_log(log, patterns, "missing", literals)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert found == {"acc": 0.5}
    assert logregex.TAIL_BYTES < read <= logregex.MAX_BYTES  # grew for the primary, then stopped
    assert peak < 5 * logregex.MAX_CHUNK  # one chunk at a time, not the file


def test_metric_cut_by_chunk_edge_is_still_found(tmp_path):
    log = tmp_path / "run.log"
    line = b"eval/loss=0.125\n"
    filler = b"x" * (logregex.FIRST_CHUNK - 5) + b"\n"  # the metric line straddles the first chunk's start
    log.write_bytes(line + filler)
    patterns, literals, _ = logregex.build_patterns("", ["eval/loss"])
    assert logregex.scan_log(log, patterns, "eval/loss", literals)[0] == {"eval/loss": 0.125}


# ---------------------------------------------------------------- custom


def test_custom_code(proj):
    root, run_dir = proj
    (run_dir / "run.log").write_text("final score 0.875\n")
    (run_dir / "scores.json").write_text(json.dumps({"acc": 0.5}))
    code = textwrap.dedent("""\
        m = re.search(r"final score (\\S+)", run_log_text)
        data = json.loads((run_dir / "scores.json").read_text())
        return {"score": m.group(1), "acc": data["acc"], "nan": math.nan}""")
    out = extract(make_cfg(root, metric_backend="custom", metric_extract_code=code), run_dir, 0.0, ["score"])
    assert out.source == "custom" and out.metrics["score"] == 0.875 and out.metrics["acc"] == 0.5
    assert math.isnan(out.metrics["nan"]) and out.note == ""


@pytest.mark.parametrize(
    "code,note",
    [
        ("return {'a': 1}['x']", "custom metric code raised KeyError: 'x'"),
        ("return [1.0]", "custom metric code returned list, expected dict[str, float]"),
        ("return {'score': 'high'}", "custom metric code returned a non-number for 'score'"),
        ("return {'score': 1.0", "custom metric code has a syntax error"),
        ("raise RuntimeError('line one\\nline two')", "custom metric code raised RuntimeError: line one line two"),
    ],
)
def test_custom_code_failures_give_one_line(proj, code, note):
    root, run_dir = proj
    (run_dir / "run.log").write_text("score=0.5\n")  # the log has it, but a broken snippet is not replaced
    out = extract(make_cfg(root, metric_backend="custom", metric_extract_code=code), run_dir, 0.0, ["score"])
    assert out.metrics == {} and out.source == "none"
    assert out.note.startswith(note) and "\n" not in out.note and "Traceback" not in out.note


def test_custom_without_primary_falls_back_to_log(proj):
    root, run_dir = proj
    (run_dir / "run.log").write_text("score=0.5\n")
    out = extract(
        make_cfg(root, metric_backend="custom", metric_extract_code="return {'other': 2}"), run_dir, 0.0, ["score"]
    )
    assert out.metrics == {"score": 0.5, "other": 2.0} and out.source == "log"
    assert "custom code returned no 'score'" in out.note
