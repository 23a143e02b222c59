"""A real one-node Slurm for the test suite: munged, slurmctld and slurmd started by hand as root.

Use it from a test module with `from slurm_cluster import slurm_cluster  # noqa: F401`.
The fixture writes its own slurm.conf (free ports, state in a temporary folder,
no systemd, no cgroups, no accounting), points the clients at it with
SLURM_CONF, waits until the node is idle, and at the end cancels every job and
stops only the daemons it started, by PID. It skips, with the reason, only when
Slurm cannot be installed (scripts/install-slurm.sh) or this is not root.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "scripts" / "install-slurm.sh"
START_TIMEOUT_S = 60  # slurmctld up + node idle; about 2 s here
TOOLS = ("slurmctld", "slurmd", "sbatch", "srun", "scontrol", "scancel", "squeue", "sinfo", "munged", "munge")
os.environ["PATH"] += os.pathsep + "/usr/sbin:/sbin"  # the daemons live in sbin


def _missing() -> list[str]:
    return [t for t in TOOLS if not shutil.which(t)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _munge_works() -> bool:
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=5).stdout
        return subprocess.run(["unmunge"], input=cred, capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _wait(what: str, check, timeout: float = START_TIMEOUT_S, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    tail = log.read_text()[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"local Slurm: {what} not reached in {timeout} s\n{tail}")


def _pid(path: Path) -> int:
    _wait(f"{path.name} written", lambda: path.exists() and path.read_text().strip().isdigit(), 10)
    return int(path.read_text().strip())


def _start_munged() -> int | None:
    """Start munged as its own user unless one already works; returns the PID we started, or None."""
    if _munge_works():
        return None
    key = Path("/etc/munge/munge.key")
    for d in ("/etc/munge", "/var/lib/munge", "/var/log/munge", "/run/munge"):
        Path(d).mkdir(parents=True, exist_ok=True)
    if not key.exists() or key.stat().st_size == 0:
        key.write_bytes(os.urandom(1024))
    subprocess.run(["chown", "-R", "munge:munge", "/etc/munge", "/var/lib/munge", "/var/log/munge", "/run/munge"])
    key.chmod(0o600)
    os.chmod("/etc/munge", 0o700)
    subprocess.run(["runuser", "-u", "munge", "--", shutil.which("munged")], check=True)
    _wait("munge credentials", _munge_works, 10)
    return _pid(Path("/run/munge/munged.pid"))


def _conf(base: Path) -> Path:
    node = socket.gethostname().split(".")[0]
    hw = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    fields = dict(part.split("=", 1) for part in hw.split() if "=" in part)
    topo = " ".join(
        f"{k}={fields[k]}" for k in ("Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore") if k in fields
    )
    mem = int(int(fields.get("RealMemory", "1024")) * 0.95)  # never drained for "low RealMemory"
    for sub in ("state", "spool", "log", "run"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    conf = base / "slurm.conf"
    conf.write_text(
        f"""# One-node Slurm of the test suite.
ClusterName=artest
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/run/slurmctld.pid
SlurmdPidFile={base}/run/slurmd.pid
SlurmctldLogFile={base}/log/slurmctld.log
SlurmdLogFile={base}/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
MinJobAge=5
KillWait=2
SchedulerParameters=batch_sched_delay=0
NodeName={node} NodeAddr=127.0.0.1 CPUs={fields.get("CPUs", "1")} {topo} RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""
    )
    return conf


def _stop(pid: int, name: str) -> None:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return
    if comm != name[:15]:
        return  # the PID is someone else's now
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)


class Cluster:
    def __init__(self, base: Path, conf: Path, node: str):
        self.base, self.conf, self.node = base, conf, node

    def squeue(self) -> str:
        return subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True).stdout


def why_unavailable() -> str:
    """'' when a local Slurm can be started here, else the reason (installing it first when missing)."""
    if os.geteuid() != 0:
        return "local Slurm needs root to start munged/slurmctld/slurmd by hand"
    if _missing() and INSTALL.exists():
        subprocess.run(["bash", str(INSTALL)], capture_output=True)
    if _missing():
        return f"Slurm cannot be installed here (missing {', '.join(_missing())}); see scripts/install-slurm.sh"
    return ""


@contextmanager
def local_slurm(base: Path):
    """Start the one-node cluster with its state under `base`; stop what was started on exit."""
    started: list[tuple[int, str]] = []
    old_conf = os.environ.get("SLURM_CONF")
    conf = _conf(base)
    os.environ["SLURM_CONF"] = str(conf)
    try:
        munged = _start_munged()
        if munged:
            started.append((munged, "munged"))
        subprocess.run(["slurmctld", "-f", str(conf), "-i"], check=True)
        started.append((_pid(base / "run" / "slurmctld.pid"), "slurmctld"))
        _wait("slurmctld up", lambda: b"UP" in subprocess.run(["scontrol", "ping"], capture_output=True).stdout,
              log=base / "log" / "slurmctld.log")  # fmt: skip
        subprocess.run(["slurmd", "-f", str(conf)], check=True)
        started.append((_pid(base / "run" / "slurmd.pid"), "slurmd"))
        node = socket.gethostname().split(".")[0]

        def idle() -> bool:
            out = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True, text=True).stdout
            return out.strip() == "idle"

        _wait("node idle", idle, log=base / "log" / "slurmd.log")
        yield Cluster(base, conf, node)
    finally:
        jobs = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
        if jobs:
            subprocess.run(["scancel", *jobs], capture_output=True)
            deadline = time.monotonic() + 20
            while (
                time.monotonic() < deadline
                and subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip()
            ):
                time.sleep(0.2)
        for pid, name in reversed(started):
            _stop(pid, name)
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    with local_slurm(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster
