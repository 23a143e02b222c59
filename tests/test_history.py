"""What was tried: each run's change as data, `ar.py history`, the same program refused against the
same best, and `ar.py report --html` rendered in a real headless Chromium.

The loop below is built entirely through the real run path (`ar.py run`, `ar.py propose` + a wave)
on the minimal host, whose runs take well under a second: ~25 runs, about 10 s in all.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
import subprocess
import sys

import pytest
from conftest import MINIMAL_ANSWERS, REPO

sys.path.insert(0, str(REPO / "template" / "<<slug>>"))
from arunner.commands import history  # noqa: E402
from arunner.core import pysource  # noqa: E402
from arunner.state import changes

ARTEFACTS = REPO / "tests" / "artefacts"  # the Chromium screenshot is kept here (git-ignored)


def set_lr(exp, lr, note: str, patch: str = "") -> None:
    """train.py = the current file with CLI_OVERRIDES lr and RUN_NOTE set, plus an optional sandbox patch."""
    text = exp.train_py.read_text()
    start = text.index("CLI_OVERRIDES = {")
    end = text.index("}", start) + 1
    text = text[:start] + f"CLI_OVERRIDES = {{'lr': {lr!r}}}" + text[end:]
    lines = [f'RUN_NOTE = "{note}"' if line.startswith("RUN_NOTE = ") else line for line in text.splitlines()]
    text = "\n".join(lines) + "\n"
    if patch:
        text = text.replace("# Example:\n", f"# Example:\n{patch}\n", 1)
    exp.train_py.write_text(text)


@pytest.fixture(scope="module")
def loop(rendered_once, tmp_path_factory):
    """~25 runs: baseline + repeat, better, worse, a crash, sandbox patches, a refused duplicate and
    its --force re-run, an idea tried again after the best moved (allowed), a wave of three."""
    exp = rendered_once("minimal", MINIMAL_ANSWERS, tmp_path_factory.mktemp("hist") / "minimal")
    said = {}
    exp.ar("session", "--repeats", "2")
    exp.run()  # r0001 baseline (lr 0.1 -> 0.05), r0002 its repeat (deterministic: one extra run)
    for lr, note in [(0.2, "lr up"), (0.08, "lr down"), (0.3, "lr way up"), (0.5, "lr max")]:
        set_lr(exp, lr, note)
        exp.run()
    set_lr(exp, 0.2, "lr up, again")  # same program as "lr up", decided against the same best? no: best moved
    said["older"] = exp.run()
    set_lr(exp, 0.2, "lr up, a third time")  # now decided against this very best: refused
    before = sorted(p.name for p in (exp.dir / "runs").iterdir())
    said["refused"] = exp.ar("run", check=False)
    said["allocated_by_refusal"] = sorted(set(p.name for p in (exp.dir / "runs").iterdir()) - set(before))
    said["forced"] = exp.run("--force")
    set_lr(exp, "oops", "lr as text")  # argparse rejects it: a crash
    said["crash"] = exp.run()
    for i, lr in enumerate([0.07, 0.065, 0.9, 0.06]):
        patch = f"import minipkg.train as m\nm.EXTRA_{i} = {i}" if i % 2 else ""
        set_lr(exp, lr, f"idea {i}", patch)
        exp.run()
    for lr in (0.055, 0.4, 1.0):  # a wave of three
        set_lr(exp, lr, f"wave lr {lr}")
        exp.ar("propose")
    exp.ar("run")
    for lr in (0.7, 0.11, 0.12, 0.13, 0.14, 0.052):
        set_lr(exp, lr, f"sweep {lr}")
        exp.run()
    said["history"] = exp.ar("history", "--last", "1000").stdout.splitlines()
    return exp, said


def test_program_md_sends_the_agent_to_history(loop):
    exp, _ = loop
    program = (exp.dir / "program.md").read_text()
    command = f"python .autoresearch/{exp.slug}/ar.py history"
    assert command in program and "context was reset" in program
    assert exp.ar(*command.split()[2:]).stdout.startswith("# ")  # the command as printed works


def ledger_rows(exp) -> dict:
    return {r["run_id"]: r for r in exp.rows()}


def test_every_run_records_its_change(loop):
    exp, _ = loop
    rows = ledger_rows(exp)
    assert len(rows) >= 20
    for run_id in rows:
        change = json.loads((exp.dir / "runs" / run_id / "change.json").read_text())
        assert change["run_id"] == run_id and change["verdict"] == rows[run_id]["verdict"]
    down = next(r for r in rows.values() if r["note"].startswith("lr down"))
    change = json.loads((exp.dir / "runs" / down["run_id"] / "change.json").read_text())
    assert change["against"] == "r0001" and change["overrides"] == {"lr": [0.1, 0.08]}
    assert change["summary"] == "lr 0.1→0.08"
    assert change["delta"] == pytest.approx(0.03 - 0.05)
    diff = (exp.dir / "runs" / down["run_id"] / "train.diff").read_text()
    assert "+CLI_OVERRIDES = {'lr': 0.08}" in diff and diff.startswith("--- runs/r0001/train.py")
    patched = next(r for r in rows.values() if r["note"].startswith("idea 1"))
    change = json.loads((exp.dir / "runs" / patched["run_id"] / "change.json").read_text())
    assert change["patched"] == ["EXTRA_1"], change  # `m.` (an import alias) dropped
    repeat = json.loads((exp.dir / "runs" / "r0002" / "change.json").read_text())
    assert repeat["rerun_of"] == "r0001" and repeat["summary"] == "re-run of r0001"


def test_history_lines_match_the_ledger(loop):
    exp, said = loop
    rows = ledger_rows(exp)
    lines = said["history"]
    assert lines[0].startswith("# ")
    body = lines[1:]
    assert all(len(line.encode()) <= history.LINE_BYTES for line in lines)
    shown = [line.split(" ", 1)[0] for line in body]
    reruns = [i for i, r in rows.items() if r["note"].startswith(("repeat of r", "confirms r"))]
    assert reruns == ["r0002"] and "r0002" not in shown  # the repeat folds into r0001
    assert shown == [i for i in rows if i not in reruns]
    for line in body:
        run_id, verdict = line.split()[:2]
        assert verdict.rstrip("x2") == rows[run_id]["verdict"], line
    first = body[0]
    assert first.startswith("r0001 advance") and "+1rep" in first
    down = next(line for line in body if "| lr down" in line)
    assert "lr 0.1→0.08" in down and "Δ-0.02" in down
    crash = next(line for line in body if "lr as text" in line)
    assert crash.split()[1] == "crash" and "lr 0.08→oops" in crash


def test_history_filters(loop):
    exp, _ = loop
    rows = ledger_rows(exp)
    kept = exp.ar("history", "--kept").stdout.splitlines()[1:]
    assert [line.split()[0] for line in kept] == [i for i, r in rows.items() if r["verdict"] == "advance"]
    assert (
        exp.ar("history", "--last", "3").stdout.splitlines()[1:]
        == exp.ar("history", "--last", "1000").stdout.splitlines()[-3:]
    )
    wave = exp.ar("history", "--grep", "WAVE LR").stdout.splitlines()
    assert len(wave) == 4 and "3 of" in wave[0]
    bad = exp.ar("history", "--last", "0", check=False)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1 and "--last" in bad.stderr


def test_the_same_program_is_refused_against_the_same_best(loop):
    exp, said = loop
    refused = said["refused"]
    assert refused.returncode == 2 and refused.stdout == ""
    assert len(refused.stderr.splitlines()) == 1
    older = said["older"]  # "lr up, again": the first "lr up" ran against r0001, the best has moved since
    first = next(r for r in exp.rows() if r["note"] == "lr up")
    assert f"same program as {first['run_id']} (revert against older best r0001)" in older["note"]
    assert f"same program as {older['run_id']}" in refused.stderr and ": revert;" in refused.stderr
    assert "--force" in refused.stderr
    assert said["allocated_by_refusal"] == []  # nothing allocated, nothing paid
    assert "run again with --force: same program as" in said["forced"]["note"]


def test_comments_and_note_do_not_make_a_new_program():
    base = b'RUN_NOTE = "a"\nCLI_OVERRIDES = {"lr": 0.1}\n'
    assert changes.code_key(base) == changes.code_key(b'# why\nRUN_NOTE = "b"  # note\n\nCLI_OVERRIDES = {"lr": 0.1}\n')
    assert changes.code_key(base) != changes.code_key(b'RUN_NOTE = "a"\nCLI_OVERRIDES = {"lr": 0.2}\n')
    assert changes.code_key(b"def (:\n") != changes.code_key(b"def (: \n")  # unparseable: bytes decide


def test_code_key_leaves_the_shared_tree_as_it_is():
    source = b'import os\nRUN_NOTE: str = "try x"\nRUN_NOTE = "again"\nx = 1\n'
    key = changes.code_key(source)
    assert [ast.literal_eval(n.value) for n in pysource.parse(source).body[1:3]] == ["try x", "again"]
    blanked = ast.parse(source)  # the key as recorded in every index so far: the tree, its notes blanked
    for node in blanked.body[1:3]:
        node.value = ast.Constant("")
    assert key == hashlib.sha1(ast.dump(blanked).encode()).hexdigest()[:16] == changes.code_key(source)


def test_summary_of_a_sandbox_patch():
    old = b"import torch\nCLI_OVERRIDES = ['optimizer.lr=3e-4']\n"
    new = (
        b"import torch\nimport mypkg.model as m\nCLI_OVERRIDES = ['optimizer.lr=1e-3', '+foo=1']\n"
        b"def fast_forward(self, x):\n    return x\nm.Block.forward = fast_forward\n"
        b"setattr(m.Head, 'act', torch.relu)\n"
    )
    change = changes.describe(new, old)
    assert change["overrides"] == {"optimizer.lr": ["3e-4", "1e-3"], "+foo": [None, "1"]}
    assert change["patched"] == ["fast_forward", "Block.forward", "Head.act"]
    assert change["summary"] == "optimizer.lr 3e-4→1e-3, +foo -→1; patched fast_forward, Block.forward, Head.act"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="needs chromium (apt-get install -y chromium)")
def test_report_html_renders_in_headless_chromium(loop, tmp_path):
    exp, _ = loop
    out = exp.ar("report", "--html").stdout
    page = exp.dir / "report.html"
    assert "report.html" in out and page.exists()
    text = page.read_text()
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in text
    base = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    root = re.search(r"<html[^>]*>", dom.stdout).group(0)
    assert 'data-report-ready="1"' in root  # the page's script ran to its end
    assert "data-js-errors" not in root  # the error sentinel wrote nothing
    assert "Uncaught" not in dom.stderr
    broken = tmp_path / "broken.html"  # the sentinel does catch an error: a page with one
    broken.write_text(text.replace("</body>", "<script>undefinedFunction();</script></body>"))
    bad = subprocess.run([*base, "--dump-dom", broken.as_uri()], capture_output=True, text=True, timeout=120)
    assert "undefinedFunction" in re.search(r"<html[^>]*>", bad.stdout).group(0)
    kept = [r["run_id"] for r in exp.rows() if r["verdict"] == "advance"]
    assert dom.stdout.count('class="kept"') == len(kept)
    assert "<span class=\"add\">+CLI_OVERRIDES = {'lr': 0.08}</span>" in dom.stdout
    assert "lr (" in dom.stdout and "tries)" in dom.stdout  # reverted ideas grouped by what they changed
    assert "noise: " in dom.stdout and "integrity: " in dom.stdout
    ARTEFACTS.mkdir(exist_ok=True)
    shot = ARTEFACTS / "report_html.png"
    shot.unlink(missing_ok=True)
    snap = subprocess.run(
        [*base, "--hide-scrollbars", "--window-size=1200,1800", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert snap.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000, snap.stderr[-2000:]


def test_before_any_run_and_the_queue(rendered_once, tmp_path):
    exp = rendered_once("minimal", MINIMAL_ANSWERS, tmp_path / "minimal")
    assert exp.ar("history").stdout.strip() == "no runs yet: `ar.py run` records the first"
    exp.ar("report", "--html")
    assert "no runs yet" in (exp.dir / "report.html").read_text()
    set_lr(exp, 0.2, "lr up")
    exp.ar("propose")
    set_lr(exp, 0.2, "lr up, said differently")  # the same program: refused before it is queued
    (exp.train_py).write_text(exp.train_py.read_text() + "# a comment changes nothing\n")
    twin = exp.ar("propose", check=False)
    assert twin.returncode == 2 and "already queued as c0001" in twin.stderr and len(twin.stderr.splitlines()) == 1
    assert "queued c0002" in exp.ar("propose", "--force").stdout


def test_delta_in_noise_sigmas_and_the_band():
    from arunner.commands import report_html

    cand = history.Tried("r0005", "ok", "revert", 1.2, "0.2", "-1.5", "lr 1→2", "n", "n", "r0004", "lr")
    assert history.delta_text(cand) == "-1.5σ"
    cand.margin = ""
    assert history.delta_text(cand) == "Δ+0.2"
    rows = [
        {"run_id": f"r{i:04d}", "status": "ok", "valid": "true", "verdict": v, "primary_value": x}
        for i, (v, x) in enumerate([("advance", 1.0), ("revert", 1.1), ("advance", 0.8), ("revert", 0.9)], 1)
    ]
    with_band = report_html.progress_svg(rows, "min", 0.05, 2.0, {})
    assert with_band.count("<rect x=") == 1 + 4 and 'class="noise-band"' in with_band
    assert 'class="noise-band"' not in report_html.progress_svg(rows, "min", None, 2.0, {})


def test_a_crash_does_not_decide_and_the_best_is_left_to_the_noise_rule(tmp_path):
    """Index lines written by the runner's own writer (changes._append_index), no run needed."""
    idea, best_code = b"CLI_OVERRIDES = {'lr': 9}\n", b"CLI_OVERRIDES = {'lr': 1}\n"

    def line(run_id, against, source, status, verdict):
        data = {"run_id": run_id, "against": against, "code_key": changes.code_key(source), "rerun_of": None}
        data.update(status=status, verdict=verdict, delta=None, margin=None, summary="s", note="n")
        changes._append_index(tmp_path, data)

    line("r0001", "baseline", best_code, "ok", "advance")
    line("r0002", "r0001", idea, "crash", "crash")
    best = {"run_id": "r0001"}
    assert changes.same_code(tmp_path, idea, best) == ("", "same program as r0002 (crash against this best)")
    assert changes.same_code(tmp_path, best_code + b"# c\n", best) == ("", "")
    line("r0003", "r0001", idea, "ok", "revert")
    refusal, _ = changes.same_code(tmp_path, idea, best)
    assert refusal.startswith("train.py is the same program as r0003") and ": revert;" in refusal
    assert changes.check_same_code(tmp_path, idea, best, force=True).startswith("run again with --force")


def _same_code_reading_every_line(expr, source: bytes, best) -> tuple[str, str]:
    """same_code as it was before it read only the lines that can matter: the reference below."""
    key, current, at = changes.code_key(source), (best or {}).get("run_id") or "", changes.INDEX_COLUMNS.index
    cells = changes.read_index(expr)
    if current in cells and cells[current][at("code_key")] == key:
        return "", ""
    final = {c[at("rerun_of")]: c[at("verdict")] for c in cells.values() if c[at("rerun_of")]}
    same = [changes.index_row(c) for c in cells.values() if c[at("code_key")] == key and not c[at("rerun_of")]]
    for row in reversed(same):
        if row["against"] == current and row["status"] in changes.MEASURED:
            return f"as {row['run_id']} (", f"{final.get(row['run_id'], row['verdict'])}"
    if same:
        return "", f"as {same[-1]['run_id']} ({final.get(same[-1]['run_id'], same[-1]['verdict'])} against"


def test_same_code_reads_only_the_lines_that_matter_and_answers_as_a_full_read(tmp_path):
    import random

    rng = random.Random(7)
    sources = [f"x = {i}\n".encode() for i in range(4)]
    keys = [changes.code_key(s) for s in sources]
    for trial in range(60):
        lines = [changes.INDEX_HEADER]
        for n in range(rng.randint(0, 30)):
            run_id = f"r{rng.randint(1, n + 1):04d}"  # ids repeat: the last line of a run wins
            rerun = rng.choice(["", "", f"r{rng.randint(1, n + 1):04d}"])  # a confirmation of an earlier run
            cells = [run_id, rng.choice(["", "r0001", "r0002"]), rng.choice(keys), rerun]
            cells += [rng.choice(["ok", "invalid", "crash"]), rng.choice(["advance", "revert", "invalid"])]
            cells += ["", "", f"t {rng.choice(keys)}", "\udcff" if rng.random() < 0.02 else "lr 1→2", "n\r"]
            line = "\t".join(cells).encode("utf-8", "surrogateescape")  # a key elsewhere; \udcff: not UTF-8
            lines.append((line[: rng.randint(1, len(line))] if rng.random() < 0.1 else line) + b"\n")  # cut by a kill
        (tmp_path / ".ar-changes.tsv").write_bytes(changes.INDEX_HEADER.encode() + b"".join(lines[1:]))
        for source in sources:
            for best in (None, {"run_id": "r0001"}, {"run_id": "r0002"}, {"run_id": "r0099"}):
                refusal, remark = changes.same_code(tmp_path, source, best)
                want = _same_code_reading_every_line(tmp_path, source, best) or ("", "")
                if want[0]:  # refused: the run named, and its verdict (a confirmation's, if one decided)
                    assert want[0] in refusal and f": {want[1]};" in refusal and not remark, (trial, lines)
                else:
                    assert not refusal and want[1] in remark and bool(want[1]) == bool(remark), (trial, lines)
