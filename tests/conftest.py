"""Shared fixtures: fixture host projects copied into git repos, rendered with Copier, run for real.

The runner under test is the shipped code: tests import it from
template/<<slug>>/ and run the rendered copy (`ar.py`) as a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HOSTS = REPO / "tests" / "hosts"
RUNNER_SRC = REPO / "template" / "<<slug>>"
sys.path.insert(0, str(RUNNER_SRC))
sys.path.insert(0, str(REPO / "tests" / "procs"))

from liveness import pid_alive  # noqa: E402, F401  (tests import it from here)

# A shell that starts the suite in the background (`cmd &` without job control) hands every
# process SIGINT ignored, and the runners these tests start would ignore the Ctrl+C they send.
# A handler here (not SIG_IGN) goes back to the default in every child at exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# The last two landed commits of main, oldest first: experiments rendered by both exist in the
# wild (test_upgrade_matrix upgrades them; move this on when a session lands).
LANDED = ("7c6af89", "0223eb0")

# The answers every runner test starts from (the minimal host, exact metrics); tests override keys.
MINIMAL_ANSWERS = {
    "entry_pattern": "argparse-cli",
    "entry_main_module": "minipkg.train",
    "cli_args": "{lr: 0.1}",
    "metric_backend": "log",
    "primary_metric": "eval/loss",
    "slug": "261125-minimal",
    "seconds": "30",
}


# tests/hosts/eval_host: evaluation in its own module, one entry per checkpoint shape (integrity tests).
EVAL_ANSWERS = {
    "entry_pattern": "argparse-cli",
    "entry_main_module": "eval_host.train",
    "cli_args": "{steps: 60}",
    "metric_backend": "log",
    "primary_metric": "val_loss",
    "checkpoint_glob": "checkpoints/*.pt",
    "seconds": "60",
    "goal": "lower the validation loss",
    "slug": "261125-integrity",
}
# A hand-written evaluate() body with a hidden holdout metric (detection proposes val_loss only).
HOLDOUT_BODY = """import torch
from eval_host.evaluation import evaluate_model, holdout_loss
from eval_host.model import Net

saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
model = Net(hidden=saved["args"]["hidden"])
model.load_state_dict(saved["model"])
return {"val_loss": evaluate_model(model), "test_loss": holdout_loss(model)}
"""


def answers(**overrides) -> dict:
    """MINIMAL_ANSWERS with `overrides` applied."""
    return {**MINIMAL_ANSWERS, **overrides}


# The project's interpreter is this one: Copier's preflight probes `python` on PATH.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
# The one opt-out of the noise rule's baseline repeats: every test experiment runs its first baseline
# once (r0001 the baseline, r0002 the next edit); the noise tests pass AR_REPEATS themselves.
os.environ.setdefault("AR_REPEATS", "1")
os.environ.setdefault("WANDB_MODE", "offline")
# The runner's seals key lives in the user's state folder: tests use their own, never the real one.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="ar-test-state-")
# Device leases too: a folder of this test process, never the machine's /tmp/autoresearch-devices
# (tests that lease devices set their own; this catches any that forget).
os.environ["AR_DEVICE_LOCK_DIR"] = tempfile.mkdtemp(prefix="ar-test-locks-")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")
os.environ.setdefault("GIT_AUTHOR_NAME", "test")
os.environ.setdefault("GIT_AUTHOR_EMAIL", "test@example.com")
os.environ.setdefault("GIT_COMMITTER_NAME", "test")
os.environ.setdefault("GIT_COMMITTER_EMAIL", "test@example.com")
COPIER = str(Path(sys.executable).parent / "copier")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_host(name: str, dest: Path) -> Path:
    """Copy a fixture host into `dest` and make it a git repository with one commit."""
    shutil.copytree(
        HOSTS / name,
        dest,
        ignore=shutil.ignore_patterns("__pycache__", "outputs", "wandb", "lightning_logs", "checkpoints", "out"),
    )
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "host")
    return dest


def render(host: Path, data: dict, *, expect_ok: bool = True) -> subprocess.CompletedProcess:
    """`copier copy --trust --defaults` with --data answers, as a user would type it.

    `--vcs-ref HEAD`: render this checkout (uncommitted changes included), not the latest tag.
    """
    cmd = [COPIER, "copy", "--trust", "--defaults", "--quiet", "--vcs-ref", "HEAD"]
    for key, value in data.items():
        text = value if isinstance(value, str) else json.dumps(value)
        cmd += ["--data", f"{key}={text}"]
    cmd += [str(REPO), ".autoresearch"]
    proc = subprocess.run(cmd, cwd=host, capture_output=True, text=True)
    if expect_ok and proc.returncode != 0:
        raise AssertionError(f"copier failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


class Experiment:
    """A rendered experiment and its `ar.py`, driven as an agent would."""

    def __init__(self, host: Path, slug: str):
        self.host = host
        self.slug = slug
        self.dir = host / ".autoresearch" / slug

    def ar(
        self, *args: str, check: bool = True, env: dict | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, str(self.dir / "ar.py"), *args],
            cwd=self.host,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"ar.py {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def person(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`ar.py ARGS` as a person types it: stdin and stdout a terminal (a pseudo-terminal here)."""
        import pty
        import select

        master, slave = pty.openpty()
        try:
            proc = subprocess.run(
                [sys.executable, str(self.dir / "ar.py"), *args],
                cwd=self.host,
                stdin=slave,
                stdout=slave,
                stderr=subprocess.PIPE,
                text=True,
                timeout=300,
            )
            out = b""
            while select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
        finally:
            os.close(slave)
            os.close(master)
        proc.stdout = out.decode(errors="replace").replace("\r\n", "\n")
        if check and proc.returncode != 0:
            raise AssertionError(f"ar.py {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def run(self, *args: str, **kw) -> dict:
        """One `ar.py run`; returns the result.json of the run that decided (the last candidate or
        confirmation it printed: every run it made has a line `rNNNN <kind> ...`; older releases
        printed the deciding run first)."""
        proc = self.ar("run", *args, **kw)
        assert len(proc.stdout.splitlines()) <= 8 and len(proc.stdout.encode()) <= 400, proc.stdout
        printed = [line.split()[:2] for line in proc.stdout.splitlines() if line[:1] == "r" and " " in line]
        deciding = [words[0] for words in printed if words[1] in ("candidate", "confirm")]
        run_id = deciding[-1] if deciding else proc.stdout.split()[0]  # a release before kinds were printed
        return json.loads((self.dir / "runs" / run_id / "result.json").read_text())

    def start_run(self, wait_for: str = "run.log") -> subprocess.Popen:
        """`ar.py run` in the background; returns once the next run's `wait_for` file exists."""
        numbers = [int(p.name[1:]) for p in (self.dir / "runs").glob("r*")]
        target = self.dir / "runs" / f"r{max(numbers, default=0) + 1:04d}" / wait_for
        proc = subprocess.Popen(
            [sys.executable, str(self.dir / "ar.py"), "run"],
            cwd=self.host,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not target.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert target.exists(), f"{target} did not appear"
        return proc

    @property
    def train_py(self) -> Path:
        return self.dir / "train.py"

    def edit(self, old: str, new: str) -> None:
        text = self.train_py.read_text()
        assert old in text, f"{old!r} not in train.py"
        self.train_py.write_text(text.replace(old, new, 1))

    def rows(self) -> list[dict]:
        lines = (self.dir / "results.tsv").read_text().splitlines()
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"))) for line in lines[1:]]

    def best(self) -> dict | None:
        path = self.dir / "best.json"
        return json.loads(path.read_text()) if path.exists() else None


@pytest.fixture(scope="session")
def rendered_once(tmp_path_factory):
    """fresh(host, answers, dest): a rendered experiment at `dest`, copied from one render per
    (host, answers) in this test session (a render costs seconds, a copy milliseconds)."""
    cache: dict[str, Path] = {}

    def fresh(host: str, data: dict, dest: Path) -> Experiment:
        key = json.dumps([host, data], sort_keys=True)
        if key not in cache:
            src = tmp_path_factory.mktemp("rendered") / host
            render(make_host(host, src), data)
            cache[key] = src
        shutil.copytree(cache[key], dest, symlinks=True)
        return Experiment(dest, data["slug"])

    return fresh


@pytest.fixture(scope="session")
def baselined_once(rendered_once, tmp_path_factory):
    """fresh(host, answers, dest) -> (experiment, baseline): `rendered_once` plus its first `ar.py run`
    (r0001, the baseline), run once per (host, answers) in this session and copied with it; `baseline`
    is the copy's runs/r0001/result.json. A torch host with an evaluator spends seconds on a baseline.

    Only for tests whose first step is that plain baseline (no session change, no environment before
    it). The copy has a path of its own: the runner's note that it was sealed (in the state folder,
    by path) is written by its own first run, so a test of a deleted .ar-seals.json runs its own."""
    cache: dict[str, Path] = {}

    def fresh(host: str, data: dict, dest: Path) -> tuple[Experiment, dict]:
        key = json.dumps([host, data], sort_keys=True)
        if key not in cache:
            src = tmp_path_factory.mktemp("baselined") / host
            rendered_once(host, data, src).run()
            cache[key] = src
        shutil.copytree(cache[key], dest, symlinks=True)
        expr = Experiment(dest, data["slug"])
        return expr, json.loads((expr.dir / "runs" / "r0001" / "result.json").read_text())

    return fresh


@pytest.fixture
def minimal_host(tmp_path) -> Path:
    return make_host("minimal", tmp_path / "minimal")


@pytest.fixture
def minimal_expr(rendered_once, tmp_path) -> Experiment:
    return rendered_once("minimal", MINIMAL_ANSWERS, tmp_path / "minimal")


# ---------------------------------------------------------------- the suite on two workers
# `scripts/test.sh` with no arguments runs the suite in two pytest-xdist workers
# (`-n 2 -m "not serial"`), then the `serial` tests alone. Session fixtures run once per worker,
# each under its own tmp_path_factory folder, XDG_STATE_HOME and AR_DEVICE_LOCK_DIR (above).

# Run after the workers, with the machine to themselves as in a serial run:
# - the local Slurm (tests/slurm_cluster.py) is one munged, slurmctld and slurmd per session, with
#   /run/munge, and its teardown cancels every job: a second worker's cluster would meet the first's;
# - budgets, grace periods and Ctrl+C timers of a second or two, which a neighbour's CPU training
#   would stretch.
SERIAL_FILES = {"test_slurm.py", "test_waves_slurm.py", "test_watchdog.py", "test_wave_core.py", "test_slots.py"}
# Lease devices: one such test at a time on the machine. A lease is refused while any process has
# AR_DEVICES naming the device (procs/slots._device_users reads every environment, whatever lock
# folder a test sets), so two workers leasing "0" at once would wait on each other's candidates.
# A lock, not xdist_group: pytest-xdist 3.8's loadgroup does not group under pytest 9.
DEVICE_FILES = {"test_waves_run.py", "test_run_outputs.py", "test_noise_run.py", *SERIAL_FILES}
DEVICE_TESTS_LOCK = Path(tempfile.gettempdir()) / "ar-tests-lease-devices.lock"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SERIAL_FILES:
            item.add_marker(pytest.mark.serial)


@pytest.fixture(autouse=True)
def _one_device_test_at_a_time(request):
    """Held from before the test's first fixture to after its last teardown."""
    if request.node.path.name not in DEVICE_FILES:
        yield
        return
    import fcntl

    with open(DEVICE_TESTS_LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # freed when the file closes, or when this process dies
        yield
