"""The runner's commands on the minimal host: exact metrics, so every verdict is predictable."""

from __future__ import annotations

import json

import pytest
from conftest import Experiment, answers, render

from arunner.core.layout import (
    BASELINE,  # noqa: E402
    RUN_INDEX,  # noqa: E402
)


def test_status_compact_is_short_and_true(minimal_expr: Experiment):
    minimal_expr.run()
    minimal_expr.edit("'lr': 0.1,", "'lr': 0.3,")
    minimal_expr.run()
    out = minimal_expr.ar("status", "--compact").stdout.splitlines()
    assert len(out) <= 10
    assert any("best 0.05 at r0001" in line for line in out)
    assert any("advance=1" in line and "revert=1" in line for line in out)
    assert any("train.py equals the best snapshot" in line for line in out)
    minimal_expr.edit("'lr': 0.1,", "'lr': 0.2,")
    assert any("DIFFERS" in line for line in minimal_expr.ar("status", "--compact").stdout.splitlines())


def test_second_concurrent_run_is_refused_and_changes_nothing(minimal_expr: Experiment):
    minimal_expr.edit("'lr': 0.1,", "'lr': 0.1, 'sleep': 4,")
    first = minimal_expr.start_run(wait_for="started.json")
    ledger = (minimal_expr.dir / "results.tsv").read_text()
    second = minimal_expr.ar("run", check=False)
    assert second.returncode == 2
    assert "another `ar.py run` is running" in second.stderr and len(second.stderr.splitlines()) == 1
    assert sorted(p.name for p in (minimal_expr.dir / "runs").iterdir()) == ["r0001"]
    assert (minimal_expr.dir / "results.tsv").read_text() == ledger
    out, _ = first.communicate(timeout=120)
    assert out.startswith("r0001 candidate ok/advance")


def test_tail_shows_the_traceback_region(minimal_expr: Experiment):
    minimal_expr.edit("# Example:", "print('noise ' * 3)\nraise ValueError('bad idea')\n# Example:")
    result = minimal_expr.run()
    assert (result["status"], result["verdict"]) == ("crash", "crash")
    lines = minimal_expr.ar("tail", "--run", result["run_id"]).stdout.splitlines()
    assert ".autoresearch/261125-minimal/runs/r0001/train.py" in lines[0]  # where the crashed edit lives
    assert lines[1].startswith("Traceback") and lines[-1] == "ValueError: bad idea"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["tail", "--run", "r0042"], "no run r0042"),
        (["tail", "--run", "../../etc"], "not a run id"),
        (["run", "--seconds", "0"], "must be > 0"),
        (["run", "--seconds", "soon"], "not an integer"),
        (["session", "--plateau", "-3"], "must be > 0"),
        (["session", "--threshold", "low"], "not a number"),
        (["session", "--keep-checkpoints", "-1"], "must be >= 0"),
        (["chain", "--new-slug", "261125-kid", "--goal", "g", "--rationale", "  "], "rationale is empty"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_command_input_is_one_line(minimal_expr: Experiment, args, expected):
    proc = minimal_expr.ar(*args, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr, proc.stderr


def test_session_termination_plateau_and_threshold(minimal_expr: Experiment):
    minimal_expr.ar("session", "--plateau", "2")
    assert not minimal_expr.run()["should_terminate"]  # r0001 advances
    minimal_expr.edit("'lr': 0.1,", "'lr': 0.3,")
    assert not minimal_expr.run()["should_terminate"]  # 1 ok run without improvement
    minimal_expr.edit("'lr': 0.1,", "'lr': 0.4,")
    result = minimal_expr.run()
    assert result["should_terminate"] and result["terminated_by"] == "plateau"
    minimal_expr.ar("session", "--unlimited", "--threshold", "0.02")
    minimal_expr.edit("'lr': 0.1,", "'lr': 0.06,")
    result = minimal_expr.run()
    assert (result["verdict"], result["terminated_by"]) == ("advance", "primary_threshold")


def test_max_runs_counts_every_run(minimal_expr: Experiment):
    minimal_expr.ar("session", "--max-runs", "2")
    minimal_expr.edit("# Example:", "raise SystemExit(3)\n# Example:")
    first = minimal_expr.run()
    assert (first["status"], first["exit_code"], first["should_terminate"]) == ("crash", 3, False)
    second = minimal_expr.run()
    assert second["terminated_by"] == "max_runs"


@pytest.mark.parametrize(
    "name, content, expected",
    [
        (".ar-session.json", "{not json", ".ar-session.json is not valid JSON"),
        (".ar-session.json", '{"plateau": "often"}', "plateau must be a positive integer"),
        ("experiment.json", "[]", "experiment.json"),
        ("results.tsv", "garbage header\n", "results header"),
    ],
)
def test_damaged_state_file_is_one_line(minimal_expr: Experiment, name, content, expected):
    minimal_expr.run()
    (minimal_expr.dir / name).write_text(content)
    for command in (["run"], ["status", "--compact"]):
        proc = minimal_expr.ar(*command, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr, proc.stderr
    assert json.loads((minimal_expr.dir / "runs" / "r0001" / "result.json").read_text())["verdict"] == "advance"


def test_results_tsv_row_with_wrong_columns_is_named(minimal_expr: Experiment):
    minimal_expr.run()
    minimal_expr.run()
    ledger = minimal_expr.dir / "results.tsv"
    lines = ledger.read_text().splitlines(keepends=True)
    ledger.write_text(lines[0] + "r0001\tbroken\n" + lines[2])
    proc = minimal_expr.ar("status", check=False)
    assert proc.returncode == 2 and "line 2 has 2 columns" in proc.stderr


def test_report_lists_every_run_and_the_best(minimal_expr: Experiment):
    minimal_expr.run()
    minimal_expr.edit("'lr': 0.1,", "'lr': 0.07,")
    minimal_expr.edit('RUN_NOTE = "baseline"', 'RUN_NOTE = "closer lr"')
    minimal_expr.run()
    said = minimal_expr.ar("report", "--plot").stdout
    assert "wrote .autoresearch/261125-minimal/report.md" in said and "progress.png" in said
    report = (minimal_expr.dir / "report.md").read_text()
    assert "Best: **0.02** at r0002" in report
    assert "| r0001 | ok | advance |" in report and "closer lr" in report
    assert (minimal_expr.dir / "progress.png").stat().st_size > 1000


def test_pruning_is_reported_by_status(rendered_once, tmp_path):
    data = answers(cli_args="{lr: 0.1, save: ckpt/model.txt}", checkpoint_glob="ckpt/*.txt", slug="261125-prune")
    expr = rendered_once("minimal", data, tmp_path / "host")
    expr.run()  # best, keeps its checkpoint in best_ckpt/
    for lr in ("0.3", "0.4", "0.5"):
        expr.edit("'lr': 0.1,", f"'lr': {lr},")
        assert expr.run()["verdict"] == "revert"
    held = sorted(p.parent.name for p in (expr.dir / "runs").glob("r*/ckpt"))
    assert held == ["r0004"]  # the latest only; r0002 and r0003 were pruned
    assert (expr.dir / "best_ckpt" / "model.txt").read_text() == "lr=0.1\n"
    status = expr.ar("status", "--compact").stdout
    assert "checkpoints pruned so far: 2 (last: r0002, r0003)" in status


def test_chain_with_bad_slug_is_one_line(minimal_expr: Experiment):
    minimal_expr.run()
    proc = minimal_expr.ar("chain", "--new-slug", "Not A Slug", "--goal", "g", "--rationale", "because", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "slug" in proc.stderr and "YYMMDD-kebab" in proc.stderr


def test_damaged_best_is_one_line(minimal_expr: Experiment):
    minimal_expr.run()
    (minimal_expr.dir / "best_ckpt" / "meta.json").write_text("{broken")
    proc = minimal_expr.ar("run", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "meta.json" in proc.stderr or "best.json" in proc.stderr


def test_live_line_only_on_a_terminal(minimal_expr: Experiment):
    """A person watching sees `elapsed/budget | last log line`, rewritten in place; an agent sees none."""
    import os
    import pty
    import subprocess
    import sys

    minimal_expr.edit("'lr': 0.1,", "'lr': 0.1, 'sleep': 2.5,")
    minimal_expr.edit("# Example:", "print('warming up', flush=True)\n# Example:")
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, str(minimal_expr.dir / "ar.py"), "run"],
        cwd=minimal_expr.host,
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait()
    os.close(master)
    screen = b"".join(chunks).decode(errors="replace")
    assert "\r" in screen and "/30s | warming up" in screen
    assert "r0001 candidate ok/advance" in screen
    quiet = minimal_expr.ar("run").stdout  # not a terminal: only the final lines
    assert "\r" not in quiet and "warming up" not in quiet and len(quiet.splitlines()) <= 3


def test_two_experiments_run_at_the_same_time(minimal_host):
    for slug in ("261125-left", "261125-right"):
        render(minimal_host, answers(cli_args="{lr: 0.1, sleep: 2}", slug=slug))
    left, right = Experiment(minimal_host, "261125-left"), Experiment(minimal_host, "261125-right")
    background = left.start_run(wait_for="started.json")
    assert right.run()["verdict"] == "advance"  # its own lock: not blocked by the other experiment
    out, err = background.communicate(timeout=120)
    assert background.returncode == 0 and out.startswith("r0001 candidate ok/advance"), err


def test_failure_before_any_best_keeps_train_py_and_the_last_run_note(minimal_expr: Experiment):
    # A syntax error, and RUN_NOTE bound twice: Python would bind the last one.
    minimal_expr.edit('RUN_NOTE = "baseline"', 'RUN_NOTE = "first"\nRUN_NOTE = "wired my own call"')
    minimal_expr.edit("# Example:", "def broken(:\n# Example:")
    written = minimal_expr.train_py.read_bytes()
    proc = minimal_expr.ar("run")
    run_id = proc.stdout.split()[0]
    result = json.loads((minimal_expr.dir / "runs" / run_id / "result.json").read_text())
    assert (result["status"], result["verdict"]) == ("crash", "crash")
    assert minimal_expr.train_py.read_bytes() == written  # no best yet: the user's file stays
    assert "no best run yet: train.py left as it is" in proc.stdout
    assert "restored" not in proc.stdout
    assert minimal_expr.rows()[0]["note"].startswith("wired my own call")


def test_restore_splices_frozen_blocks_verbatim(tmp_path):
    from arunner.state.snapshots import restore_target

    def train(block: str) -> bytes:
        return f'RUN_NOTE = "x"\n# ---- FROZEN: io ----\n{block}\n# ---- end FROZEN ----\nlr = 0.3\n'.encode()

    new_block = 'SEP = "\\n"\nNUM = re.compile(r"\\d+\\.\\d*")'
    (tmp_path / BASELINE).write_bytes(train(new_block))
    (tmp_path / "runs" / "r0001").mkdir(parents=True)
    (tmp_path / "runs" / "r0001" / "train.py").write_bytes(train("OLD = 1"))
    restored = restore_target(tmp_path, {"run_id": "r0001", "snapshot": "runs/r0001/train.py"})
    assert restored == train(new_block)
    assert b"\\\\" not in restored


def test_ledger_drops_a_row_cut_short(tmp_path):
    from arunner.state import ledger

    path = tmp_path / "results.tsv"
    row = "r0001\tts\t1.00\tok\tadvance\tloss\t0.5\ttrue\ttrue\tnote\n"
    path.write_text(ledger.HEADER + row + "r0002\tts\t1.")
    assert ledger.repair_tail(path) is True
    assert path.read_text() == ledger.HEADER + row
    assert ledger.repair_tail(path) is False
    assert ledger.last_run_number(path) == 1 and ledger.has_row(path, "r0001")


def test_run_ids_have_one_parser_and_one_formatter(tmp_path):
    from arunner.core import runs

    for n in (1, 9999, 10000):
        assert runs.parse_run_id(runs.format_run_id(n)) == n
    assert [runs.parse_run_id(t) for t in ("r12", "x0001", "r0001.bak", "", None)] == [None] * 5
    for name in ("r0002", "r10000", "r0001", "notes", ".r0003"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    assert runs.run_numbers(tmp_path) == [1, 2, 10000]
    assert runs.next_run_id(runs.run_numbers(tmp_path)) == "r10001"
    assert runs.run_dir_of(tmp_path, 2) == runs.run_dir_of(tmp_path, "r0002") == tmp_path / "runs" / "r0002"
    assert sorted(["r10000", "r9999"], key=runs.run_key) == ["r9999", "r10000"]


def test_run_index_spares_the_listing_only_while_runs_is_unchanged(tmp_path):
    """The run index stands in for a listing of runs/ only while runs/'s stat is what it stamped,
    and only when the runner signed it: a folder made behind its back, or an index training wrote, is seen."""
    import os

    from arunner.core import runs

    for n in (1, 2, 3):
        (tmp_path / "runs" / runs.format_run_id(n)).mkdir(parents=True)
    assert runs.highest_run(tmp_path)[0] == 3  # listed: the index is written
    assert (tmp_path / RUN_INDEX).exists()
    assert runs.make_next_run_dir(tmp_path).name == "r0004"  # the runner's own allocation moves the index on
    assert runs.highest_run(tmp_path)[0] == 4
    assert runs.runs_from(tmp_path, 3) == ([3, 4], 4)  # looked up one by one: the same as a listing
    (tmp_path / "runs" / "r0009").mkdir()  # behind the runner's back: runs/'s stat moved
    assert runs.highest_run(tmp_path)[0] == 9
    assert runs.runs_from(tmp_path, 4) == ([4, 9], 9)
    index = json.loads((tmp_path / RUN_INDEX).read_text())
    (tmp_path / RUN_INDEX).write_text(json.dumps({**index, "highest": 2}))  # forged: the signature fails
    assert runs.runs_from(tmp_path, 2) == ([2, 3, 4, 9], 9)
    (tmp_path / RUN_INDEX).write_text("{")  # cut short by a crash of the machine: listed again
    assert runs.runs_from(tmp_path, 9) == ([9], 9)
    os.rmdir(tmp_path / "runs" / "r0009")
    assert runs.highest_run(tmp_path)[0] == 4
    (tmp_path / "runs" / "r0005").mkdir()  # as if made within the clock tick the index was stamped in
    runs._write_index(tmp_path, runs._stamp(tmp_path), 4)
    assert runs.make_next_run_dir(tmp_path).name == "r0006"  # the collision lists runs/: never a shared folder


def test_running_summary_agrees_with_the_ledger_and_is_rebuilt_when_stale(minimal_expr: Experiment):
    minimal_expr.ar("session", "--plateau", "5")
    minimal_expr.run()
    minimal_expr.edit("'lr': 0.1,", "'lr': 0.3,")
    minimal_expr.run()
    summary = minimal_expr.dir / ".ar-tally.json"
    kept = json.loads(summary.read_text())
    assert (kept["rows"], kept["plateau"], kept["last_run"]) == (2, 1, "r0002")
    summary.unlink()  # rebuilt from one full read: the same numbers
    assert "2 runs" in minimal_expr.ar("status", "--compact").stdout
    assert json.loads(summary.read_text()) == kept
    # a row the summary never saw (a kill between the row and the summary): noticed, rebuilt
    row = minimal_expr.rows()[-1]
    with open(minimal_expr.dir / "results.tsv", "a") as fh:
        fh.write("\t".join([*(row[k] for k in list(row)[:-1]), "typed by hand"]).replace("r0002", "r0003", 1) + "\n")
    status = minimal_expr.ar("status").stdout
    assert "3 runs" in status and "verdicts: advance=1, revert=2 over 3 candidate(s)" in status, status
    assert "r0003\tok\trevert" in status and json.loads(summary.read_text())["plateau"] == 2


def test_a_command_builds_only_its_own_parser_with_the_same_arguments():
    """`ar.py run` builds the run sub-parser alone (it is typed every iteration); what it parses is unchanged."""
    from arunner.commands import cli

    full = cli.build_parser()
    assert all(f"    {name}" in full.format_help() for name in cli.SUB_PARSERS)  # --help lists every command
    for argv in (["run"], ["run", "--seconds", "5", "--force"], ["status", "--compact"], ["tail", "--run", "r0001"]):
        assert vars(cli.build_parser(argv[0]).parse_args(argv)) == vars(full.parse_args(argv))
    assert cli.build_parser("run").format_help().count("\n    ") < full.format_help().count("\n    ")
