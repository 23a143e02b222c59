"""Where the host project is, as seen from a Copier render.

`copier update` renders three times (an old copy and a new copy in temporary
folders, plus the real destination); only the real one has the host project
around it, so anything that reads the host or refuses the run acts only there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCRATCH_MARKERS = ("copier._main.old_copy.", "copier._main.new_copy.")


def operation() -> str:
    """'copy' or 'update' (Copier keeps it in a context variable; unknown -> 'copy')."""
    try:
        from copier._main import _operation  # private, present in Copier 9.x

        return str(_operation.get("copy"))
    except Exception:  # noqa: BLE001 - an older or newer Copier: assume the safe default
        return "copy"


def conf_value(conf: Any, key: str, default: Any = None) -> Any:
    """A field of `_copier_conf` (a mapping in Copier 9.19, attributes in older versions)."""
    try:
        return conf[key]
    except (KeyError, TypeError):
        return getattr(conf, key, default)


def destination(conf: Any) -> Path:
    return Path(str(conf_value(conf, "dst_path"))).absolute()


def is_scratch(dst: Path) -> bool:
    return any(part.startswith(SCRATCH_MARKERS) for part in dst.parts)


def host_root(conf: Any) -> Path | None:
    """The host project root (the folder holding .autoresearch), or None in a scratch render."""
    dst = destination(conf)
    if is_scratch(dst):
        return None
    return dst.parent
