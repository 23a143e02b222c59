"""Jinja global `ar_preflight`: phase 0, run by a hidden first question.

It stops the interview with one line (copier's UserMessageError) when:
the destination is not inside a project with Python code to train, torch is not importable
by the project's interpreter, an update would run on an experiment git does
not track (Copier would delete files and revert train.py, and exit 0), or a
--data value is invalid. Soft probes only warn.
"""

from __future__ import annotations

import sys
from pathlib import Path

from copier.errors import UserMessageError
from jinja2.ext import Extension
from plumbum import local
from plumbum.commands.processes import CommandNotFound, ProcessExecutionError

# The one sys.path edit of the Copier side. Copier loads the extensions in the
# order copier.yml lists them and this one is first, so every later extension
# can import its siblings (answer_rules, detection, ...) and the vendored
# runner (arunner: the single source of the rules both halves share).
# `copier update` renders the old and the new template version in one process, each from
# its own clone: modules a previous clone imported under these names are dropped, and this
# clone's folders go first, or the new extensions would run against the old ones' siblings.
_HERE = Path(__file__).resolve().parent
_OWN = (_HERE.parent / "template" / "<<slug>>", _HERE)
_NAMES = {p.stem for p in _HERE.glob("*.py")} | {"detection", "arunner"}
for _name, _module in list(sys.modules.items()):
    _file = getattr(_module, "__file__", None) or ""
    if _name.partition(".")[0] in _NAMES and _file and not _file.startswith(str(_HERE.parent) + "/"):
        del sys.modules[_name]
for _path in _OWN:
    while str(_path) in sys.path:
        sys.path.remove(str(_path))
    sys.path.insert(0, str(_path))
import answer_rules  # noqa: E402
import defaults  # noqa: E402
import hostpaths  # noqa: E402

SOFT_MODULES = ("accelerate", "wandb", "torch.distributed", "lightning", "pytorch_lightning", "tensorboard", "hydra")
PROBE = (  # find_spec only: nothing is imported (a dotted name is looked up as a file, since
    # find_spec("torch.distributed") would import torch itself, ~2 s)
    "import importlib.util as u, json, os\n"
    "def has(m):\n"
    "    top, _, sub = m.partition('.')\n"
    "    try: spec = u.find_spec(top)\n"
    "    except Exception: return False\n"
    "    if spec is None or not sub: return spec is not None\n"
    "    return any(os.path.exists(os.path.join(d, *sub.split('.'))) for d in spec.submodule_search_locations or [])\n"
    f"print(json.dumps({{m: has(m) for m in ('torch',) + {SOFT_MODULES!r}}}))"
)


def _interpreters(root: Path):
    """The project's interpreter, in the order SPEC §3 gives: .venv, uv run --no-sync, python on PATH."""
    venv_python = root / ".venv" / "bin" / "python"
    if venv_python.exists():
        yield ".venv/bin/python", local[str(venv_python)]
    if (root / "uv.lock").exists():
        try:
            yield "uv run --no-sync python", local["uv"]["run", "--no-sync", "--project", str(root), "python"]
        except CommandNotFound:
            pass
    for name in ("python", "python3"):
        try:
            yield f"{name} on PATH", local[name]
            return
        except CommandNotFound:
            continue


def probe_modules(root: Path) -> tuple[dict, list[str]]:
    """Which modules the project's interpreter can import (find_spec: nothing is imported)."""
    import json

    tried = []
    for label, cmd in _interpreters(root):
        try:
            with local.cwd(str(root)):
                found = json.loads(cmd["-c", PROBE](timeout=60).strip().splitlines()[-1])
        except (ProcessExecutionError, ValueError, OSError, IndexError) as exc:
            tried.append(f"{label} (failed: {str(exc).splitlines()[0][:60] if str(exc) else type(exc).__name__})")
            continue
        if found.get("torch"):
            found["_interpreter"] = label
            return found, tried
        tried.append(f"{label} (no torch)")
    return {}, tried


def _update_guard(root: Path, dst: Path, answers_file: str) -> None:
    """Refuse `copier update` unless git tracks the experiment (SPEC §10 data-loss hazard)."""
    dst_expr = (dst / answers_file).parent if answers_file else None
    if dst_expr is None or dst_expr == dst or not dst_expr.exists():
        return
    git = local["git"]
    target = dst_expr / "train.py"
    with local.cwd(str(root)):
        ignored = git["check-ignore", "-q", str(target)].run(retcode=None)[0] == 0
        tracked = git["ls-files", "--error-unmatch", str(target)].run(retcode=None)[0] == 0
    if ignored or not tracked:
        why = "git-ignored" if ignored else "not tracked by git"
        raise UserMessageError(
            f"refusing to update: {dst_expr.relative_to(root)} is {why}, and copier update would delete "
            f"its files and revert train.py; run `git add -f {dst_expr.relative_to(root)} && git commit` first"
        )


def _check_data(conf, root: Path | None) -> None:
    data = dict(hostpaths.conf_value(conf, "data") or {})
    pattern = data.get("entry_pattern", "argparse-cli")
    for key, raw in data.items():
        if key not in answer_rules.RULES:
            continue
        try:
            value = answer_rules.parse_value(key, raw)
        except ValueError as exc:
            raise UserMessageError(answer_rules.describe(key, raw, str(exc))) from None
        reason = answer_rules.check(
            key,
            value,
            root=root,
            dst=hostpaths.destination(conf),
            creating=hostpaths.operation() != "update",
            entry_pattern=pattern,
        )
        if reason:
            raise UserMessageError(answer_rules.describe(key, raw, reason))


def wandb_login_note(root: Path | None, backend: str, conf) -> None:
    """The `wandb login` note, once, and only when the runs will report through wandb."""
    found = hostpaths.PROBES.get(str(root), {})
    if root is None or not found.get("wandb") or "wandb_note" in found:
        return
    if backend == "auto" and defaults.detected(conf).metric_backend != "wandb":
        return
    if backend not in ("wandb", "auto"):
        return
    found["wandb_note"] = True
    netrc = Path.home() / ".netrc"
    if not (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace")):
        print(
            "note: wandb is installed but `wandb login` is not configured (~/.netrc has no api.wandb.ai); "
            "runs will log offline only. Does not block setup.",
            file=sys.stderr,
        )


class Preflight(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.globals["ar_preflight"] = self.preflight

    @classmethod
    def preflight(cls, conf) -> str:
        root = hostpaths.host_root(conf)
        if root is not None and not hostpaths.is_project_root(Path(root)):
            raise UserMessageError(
                f"copier must run from the root of a Python project: no Python code found in {root}; "
                "cd into the folder holding your training code and run "
                "`copier copy --trust <template> .autoresearch` there"
            )
        _check_data(conf, root)
        if root is None:  # a scratch render of copier update: nothing of the host to probe
            return ""
        if hostpaths.operation() == "update":
            _update_guard(root, hostpaths.destination(conf), str(hostpaths.conf_value(conf, "answers_file", "")))
        if str(root) not in hostpaths.PROBES:
            found, tried = probe_modules(root)
            if not found:
                raise UserMessageError(
                    f"torch is not importable by this project's Python (tried: {'; '.join(tried) or 'nothing'}); "
                    "install it (e.g. `uv sync` or `pip install torch`) or create .venv, then run copier again"
                )
            hostpaths.PROBES[str(root)] = found
            cls._soft_warnings(root, found)
        return ""

    @staticmethod
    def _soft_warnings(root: Path, found: dict) -> None:
        git_file = root / ".git"
        if git_file.is_file() and not (root / ".venv").exists():
            for sibling in root.parent.iterdir():
                if sibling != root and (sibling / ".venv" / "bin" / "python").exists():
                    print(
                        f"note: this is a git worktree without .venv; sibling {sibling} has one "
                        f"(`ln -s {sibling}/.venv .venv` would reuse it)",
                        file=sys.stderr,
                    )
                    break
