"""Fixture: a process tree that hangs (or exits, leaving children behind).

Every member appends "<role> <pid>" to PIDFILE once its signal handling is in place,
so a test knows each PID it must later find dead.

usage: tree.py PIDFILE [--children N] [--grandchild] [--setsid-orphan]
               [--term default|ignore|record|graceful] [--say TEXT] [--exit-after S]

  --grandchild     each child forks a grandchild (same group: found by ancestry)
  --setsid-orphan  a double fork: a grandchild that calls setsid() and whose parent
                   exits at once, so neither ancestry nor the group finds it
  --term           SIGTERM behaviour of every member: ignore it; record it
                   ("TERM <pid>") and keep running; or flush for 0.3 s and exit
  --say            the root writes TEXT to stdout (the run log)
  --exit-after     the root exits 0 after S seconds, leaving its children running
"""

import os
import signal
import sys
import time


def note(pidfile, text):
    fd = os.open(pidfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (text + "\n").encode())  # one small O_APPEND write: never interleaved
    os.close(fd)


def setup(pidfile, term, role):
    if term == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif term == "record":
        signal.signal(signal.SIGTERM, lambda s, f: note(pidfile, f"TERM {os.getpid()}"))
    elif term == "graceful":

        def flush_and_exit(s, f):
            time.sleep(0.3)  # a writer flushing its buffers
            note(pidfile, f"flushed {os.getpid()}")
            os._exit(0)

        signal.signal(signal.SIGTERM, flush_and_exit)
    note(pidfile, f"{role} {os.getpid()}")


def hang():
    while True:
        signal.pause()


def fork(fn):
    pid = os.fork()
    if pid == 0:
        try:
            fn()
        finally:
            os._exit(0)
    return pid


def main(argv):
    pidfile, opts = argv[0], argv[1:]

    def get(name, default):
        return opts[opts.index(name) + 1] if name in opts else default

    term, children = get("--term", "default"), int(get("--children", "1"))

    def member(role):
        setup(pidfile, term, role)
        hang()

    def child():
        if "--grandchild" in opts:
            fork(lambda: member("grandchild"))
        member("child")

    def orphan():
        os.setsid()
        member("orphan")

    for _ in range(children):
        fork(child)
    if "--setsid-orphan" in opts:
        fork(lambda: fork(orphan))  # the middle process exits at once: the orphan goes to init
    setup(pidfile, term, "root")
    if "--say" in opts:
        sys.stdout.write(get("--say", ""))
        sys.stdout.flush()
    if "--exit-after" in opts:
        time.sleep(float(get("--exit-after", "0")))
        return 0
    hang()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
