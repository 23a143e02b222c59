"""Fixture for torchrun: every rank joins a gloo group, then hangs; rank 0 also
starts a grandchild in its own session. Each process appends "<role> <pid>" to PIDFILE.

usage: torchrun --nproc-per-node 2 ddp_hang.py PIDFILE
"""

import os
import subprocess
import sys
import time

import torch.distributed as dist

pidfile = sys.argv[1]


def note(text):
    fd = os.open(pidfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (text + "\n").encode())
    os.close(fd)


dist.init_process_group(backend="gloo")
rank = dist.get_rank()
note(f"rank{rank} {os.getpid()}")
if rank == 0:
    code = (
        "import os, signal, sys; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND);"
        "os.write(fd, b'orphan %d\\n' % os.getpid()); os.close(fd); signal.pause()"
    )
    subprocess.Popen([sys.executable, "-c", code, pidfile], start_new_session=True)
print(f"rank {rank} ready", flush=True)
while True:
    time.sleep(3600)
