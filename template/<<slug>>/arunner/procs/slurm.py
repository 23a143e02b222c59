"""The slurm launcher: one candidate as one batch job, with the same result shape as a local run.

The job is submitted with `sbatch --parsable` (the id comes back at once and is
written to a file, so a runner killed meanwhile can still cancel it), then its
state is read with `scontrol` at a period that backs off from POLL_MIN_S to
POLL_MAX_S. The budget counts from the moment the job runs, not from submission:
queueing is not the candidate's time. At the budget, or on Ctrl+C, the runner
itself calls `scancel` (Slurm checks its own --time only about every 30 s, so
--time is a backstop). Output goes straight from the node into run.log, so the
experiment folder must be on a filesystem the nodes share: check_visible tests it.
"""

from __future__ import annotations

import math
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

from ..core.errors import UserError
from ..core.layout import SLURM_CHECK_PREFIX
from .launch import LaunchResult, last_line

POLL_MIN_S = 0.1  # first state reads: a short job is noticed quickly
POLL_MAX_S = 2.0  # period ceiling: one scontrol call per job this often is light on slurmctld
POLL_GROWTH = 1.5  # back-off factor between reads while the state does not change
TIME_BACKSTOP_S = 60.0  # --time = budget + grace + this: Slurm's own limit fires only if we could not cancel
CANCEL_WAIT_S = 120.0  # after scancel, how long to wait for the job to leave (KillWait is often 30 s)
CLI_TIMEOUT_S = 60.0  # one sbatch / scontrol / sacct call (a busy slurmctld answers slowly)
CHECK_TIMEOUT_S = 300.0  # the visibility check job, queueing included
UNKNOWN_LIMIT_S = 120.0  # a job neither scontrol nor sacct knows for this long is given up on

# Final states (JobState) -> how the runner records them.
DONE, FAILED, TIMED_OUT, CANCELLED, REQUEUE = "done", "failed", "timeout", "cancelled", "requeue"
FINAL = {
    "COMPLETED": DONE,
    "FAILED": FAILED,
    "OUT_OF_MEMORY": FAILED,
    "TIMEOUT": TIMED_OUT,
    "DEADLINE": TIMED_OUT,
    "CANCELLED": CANCELLED,
    "PREEMPTED": REQUEUE,  # not the candidate's fault: run it again
    "NODE_FAIL": REQUEUE,
    "BOOT_FAIL": REQUEUE,
    "REVOKED": REQUEUE,  # moved to another cluster of a federation
}
_KV = re.compile(r"(\w+)=(\S*)")


class SlurmResult(LaunchResult):
    def __init__(self, *, job_id: str = "", state: str = "", requeue: bool = False, note: str = "", **launch):
        super().__init__(**launch)
        self.job_id = job_id
        self.state = state  # Slurm's final JobState, e.g. COMPLETED, TIMEOUT, NODE_FAIL
        self.requeue = requeue  # lost to the cluster (preempted, node failure): queue the candidate again
        self.note = note  # one line for the ledger when the state needs explaining


def format_time(seconds: float) -> str:
    """Seconds -> an sbatch --time of whole minutes, rounded up ('0:01' would mean one second)."""
    minutes = max(1, math.ceil(seconds / 60))
    days, rest = divmod(minutes, 24 * 60)
    return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise UserError(f"{name} is not on PATH: the slurm launcher needs the Slurm client tools on this machine")
    return path


def _cli(args: list[str], env: Optional[dict] = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError(
            f"{args[0]} did not answer within {CLI_TIMEOUT_S:g} s; is slurmctld up? (try `sinfo`)"
        ) from None


def submit(
    cmd: list[str], cwd: Path, env: dict[str, str], log_path: Path, time_s: float, name: str, sbatch_args: list[str]
) -> str:
    """sbatch the command; returns the job id. --export=ALL: the job sees exactly `env`."""
    args = [
        _tool("sbatch"),
        "--parsable",
        f"--job-name={name}",
        f"--output={log_path}",
        "--open-mode=append",
        f"--chdir={cwd}",
        "--export=ALL",
        f"--time={format_time(time_s)}",
        "--no-requeue",  # a preempted job comes back to us as PREEMPTED and the runner queues it again
        *sbatch_args,
        f"--wrap=exec {shlex.join(cmd)}",
    ]
    proc = _cli(args, env)
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"sbatch refused the job: {msg}; check the slurm options of this session")
    return proc.stdout.strip().split(";")[0]  # "<id>" or "<id>;<cluster>"


def job_state(job_id: str) -> tuple[str, str]:
    """(JobState, ExitCode 'code:signal') from scontrol, else from sacct; ('UNKNOWN', '') when neither knows it."""
    proc = _cli([_tool("scontrol"), "show", "job", "-o", job_id])
    if proc.returncode == 0:
        fields = dict(_KV.findall(proc.stdout))
        return fields.get("JobState", "UNKNOWN"), fields.get("ExitCode", "")
    if shutil.which("sacct"):  # the job left scontrol's memory (MinJobAge): accounting may still know it
        proc = _cli(["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "State,ExitCode"])
        line = proc.stdout.strip().splitlines()[:1]
        if proc.returncode == 0 and line and "|" in line[0]:
            state, code = line[0].split("|", 1)
            return state.split()[0], code  # "CANCELLED by 0" -> CANCELLED
    return "UNKNOWN", ""


def cancel(job_id: str) -> None:
    """scancel: SIGTERM to the job, SIGKILL after the cluster's KillWait."""
    _cli([_tool("scancel"), job_id])


def _exit_code(text: str) -> int:
    code, _, sig = text.partition(":")
    code_i, sig_i = int(code or 0), int(sig or 0)
    return code_i if code_i else (-sig_i if sig_i else 1)  # FAILED with 0:0 still failed


def _wait(event: Optional[threading.Event], seconds: float) -> None:
    if event is None:
        time.sleep(seconds)
    else:
        event.wait(seconds)


def run_job(
    cmd: list[str],
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    budget_s: float,
    grace_s: float,
    marker: tuple[str, str],
    live: bool,
    *,
    sbatch_args: Optional[list[str]] = None,
    job_file: Optional[Path] = None,
    stop: Optional[threading.Event] = None,
) -> SlurmResult:
    """Run one candidate as one Slurm job and wait for its end; arguments as run_training's.

    sbatch_args: the session's options (--partition, --gres=gpu:1, --account, ...).
    job_file: the job id is written there right after submission (for repair).
    stop: set from another thread to cancel the job like a Ctrl+C.
    """
    env = {**env, marker[0]: marker[1]}
    name = f"ar-{Path(cwd).name}-{Path(log_path).parent.name}"[:60]
    started_at = time.time()
    job_id = submit(cmd, cwd, env, log_path, budget_s + grace_s + TIME_BACKSTOP_S, name, list(sbatch_args or []))
    if job_file:
        Path(job_file).write_text(job_id + "\n")
    try:
        prev_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread: the wave cancels through `stop`
        prev_term = None
    try:
        return _follow(job_id, log_path, budget_s, live, stop, started_at, time.monotonic())
    finally:
        if prev_term is not None:
            signal.signal(signal.SIGTERM, prev_term)


def cancel_recorded(job_file: Path) -> str:
    """Repair after a killed runner: cancel the job recorded in job_file if it still runs; its last state.

    Returns '' when no job was recorded. Waits (up to CANCEL_WAIT_S) until the job has ended.
    """
    try:
        job_id = Path(job_file).read_text().strip()
    except FileNotFoundError:
        return ""
    state, _ = job_state(job_id)
    if state in FINAL or state == "UNKNOWN":
        return state
    cancel(job_id)
    deadline = time.monotonic() + CANCEL_WAIT_S
    while state not in FINAL and state != "UNKNOWN" and time.monotonic() < deadline:
        time.sleep(POLL_MIN_S)
        state, _ = job_state(job_id)
    return state


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _follow(
    job_id: str,
    log_path: Path,
    budget_s: float,
    live: bool,
    stop: Optional[threading.Event],
    started_at: float,
    t_submit: float,
) -> SlurmResult:
    t_run = None  # monotonic time the job was first seen running
    why = ""  # "" | "deadline" | "interrupt": why we cancelled it
    period, last_state, cancel_deadline = POLL_MIN_S, "", None
    state, exit_text, unknown_since = "UNKNOWN", "", None
    while True:
        try:
            try:
                state, exit_text = job_state(job_id)
            except UserError:  # slurmctld slow or restarting: read again later
                state, exit_text = "UNKNOWN", ""
            now = time.monotonic()
            if state != last_state:
                period, last_state = POLL_MIN_S, state
                unknown_since = now if state == "UNKNOWN" else None
            if state == "UNKNOWN" and now - unknown_since > UNKNOWN_LIMIT_S:
                break
            if state == "RUNNING" and t_run is None:
                t_run, started_at = now, time.time()
            elif state in ("PENDING", "REQUEUED") and t_run is not None and not why:
                t_run = None  # requeued by the cluster despite --no-requeue: its budget starts again
            if state in FINAL or (state == "UNKNOWN" and why):
                break
            if not why and stop is not None and stop.is_set():
                raise KeyboardInterrupt
            if not why and t_run is not None and now >= t_run + budget_s:
                why, cancel_deadline = "deadline", now + CANCEL_WAIT_S
                cancel(job_id)
            if cancel_deadline and now > cancel_deadline:
                state = "UNKNOWN"
                break
            if live:
                shown = f"{now - t_run:.0f}/{budget_s:g}s" if t_run else "queued"
                sys.stderr.write(f"\r\x1b[Kjob {job_id} {state.lower()} {shown} | {last_line(Path(log_path))}"[:120])
                sys.stderr.flush()
            step = period if t_run is None or why else min(period, max(0.0, t_run + budget_s - now))
            _wait(stop if not why else None, step)
            period = min(POLL_MAX_S, period * POLL_GROWTH)
        except KeyboardInterrupt:
            if why == "interrupt":  # a second Ctrl+C: stop waiting, the job is cancelled already
                raise
            why, cancel_deadline, period = "interrupt", time.monotonic() + CANCEL_WAIT_S, POLL_MIN_S
            cancel(job_id)
    if live:
        sys.stderr.write("\r\x1b[K")
    wall_s = time.monotonic() - (t_run or t_submit)  # a job over between two reads: from submission
    return _result(job_id, state, exit_text, why, started_at, wall_s, log_path)


def _result(
    job_id: str, state: str, exit_text: str, why: str, started_at: float, wall_s: float, log_path: Path
) -> SlurmResult:
    kind = FINAL.get(state)
    common = dict(started_at=started_at, wall_s=wall_s, last_line=last_line(Path(log_path)), job_id=job_id, state=state)
    if kind == DONE:
        return SlurmResult(exit_code=0, timed_out=False, interrupted=False, **common)
    if why == "interrupt":
        return SlurmResult(exit_code=None, timed_out=False, interrupted=True, **common)
    if kind == TIMED_OUT or why == "deadline":
        return SlurmResult(exit_code=None, timed_out=True, interrupted=False, **common)
    if kind == FAILED:
        note = "out of memory (Slurm OUT_OF_MEMORY)" if state == "OUT_OF_MEMORY" else ""
        return SlurmResult(exit_code=_exit_code(exit_text), timed_out=False, interrupted=False, note=note, **common)
    if kind == CANCELLED:
        note = f"job {job_id} was cancelled outside the runner (scancel or an administrator)"
        return SlurmResult(exit_code=None, timed_out=False, interrupted=True, note=note, **common)
    if kind == REQUEUE:
        note = f"job {job_id} ended {state}: lost to the cluster, not a crash of the candidate; queue it again"
        return SlurmResult(exit_code=None, timed_out=False, interrupted=True, requeue=True, note=note, **common)
    note = f"job {job_id} ended in state {state} (the runner cannot tell why); see `scontrol show job {job_id}`"
    return SlurmResult(exit_code=None, timed_out=False, interrupted=False, note=note, **common)


def check_visible(exp_dir: Path, sbatch_args: Optional[list[str]] = None) -> None:
    """Refuse (UserError) unless a job started with these options sees this experiment folder.

    One small job reads a token file written here; run it once per session, not per candidate.
    """
    exp_dir = Path(exp_dir).resolve()
    token = uuid.uuid4().hex
    path = exp_dir / f"{SLURM_CHECK_PREFIX}{token[:8]}"
    path.write_text(token)
    args = [_tool("srun"), "--export=ALL", f"--chdir={exp_dir}", "--ntasks=1", "--time=1", "--job-name=ar-check"]
    args += [*(sbatch_args or []), "cat", str(path)]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError(
            f"the Slurm check job did not finish within {CHECK_TIMEOUT_S:g} s (is the partition busy? try `squeue`)"
        ) from None
    finally:
        path.unlink(missing_ok=True)
    if proc.returncode != 0 or proc.stdout.strip() != token:
        why = (proc.stderr.strip().splitlines() or ["it could not read the token file"])[-1]
        raise UserError(
            f"a Slurm job cannot see {exp_dir} ({why}); put the project on a filesystem the nodes share "
            "(home or a shared scratch), or use the local launcher"
        )


class SlurmLauncher:
    """The wave's launcher interface (run, cancel) over run_job."""

    def __init__(self, sbatch_args: Optional[list[str]] = None, job_file_name: str = "slurm_job"):
        self.sbatch_args, self.job_file_name = list(sbatch_args or []), job_file_name
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def _stop(self, name: str) -> threading.Event:
        with self._lock:
            return self._stops.setdefault(name, threading.Event())

    def run(self, cand, env: dict[str, str], live: bool) -> SlurmResult:
        job_file = Path(cand.log_path).with_name(self.job_file_name)
        return run_job(
            cand.cmd,
            cand.cwd,
            env,
            cand.log_path,
            cand.budget_s,
            cand.grace_s,
            cand.marker,
            live,
            sbatch_args=self.sbatch_args,
            job_file=job_file,
            stop=self._stop(cand.name),
        )

    def cancel(self, cand, force: bool = False) -> None:
        self._stop(cand.name).set()
