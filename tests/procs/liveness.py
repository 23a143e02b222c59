"""The one "is this pid alive" check of the tests and benches (Linux /proc)."""

from __future__ import annotations

from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Running (zombies count as dead: they hold no resources and cannot be killed)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return data[data.rindex(b")") + 2 :][:1] not in (b"Z", b"X")
