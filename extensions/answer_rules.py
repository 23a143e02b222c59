"""Validation rules for every answer key (SPEC §5), shared by the interview's
validators and the up-front check of --data values.

Each rule returns "" when the value is fine, else a short reason that names
what is allowed. No Jinja or Copier here: plain functions, easy to test. Which
rule checks which key, each key's type and its allowed choices come from the
runner's answer table (arunner.answers); the rules the runner also applies
(constraint syntax, how metric_extract_code is wrapped) are imported from the
vendored runner, so the interview accepts exactly what the runner will run.
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Any, Callable

import yaml

from arunner.core.answers import ANSWERS, INT, YAML
from arunner.core.config import CONSTRAINT_RE
from arunner.core.fsutil import module_file
from arunner.metrics.custom import compile_extract

YAML_KEYS = tuple(a.name for a in ANSWERS.values() if a.type == YAML)
INT_KEYS = tuple(a.name for a in ANSWERS.values() if a.type == INT)
SLUG_RE = re.compile(r"^(\d{6})-([a-z0-9]+(?:-[a-z0-9]+)*)$")
DOTTED_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
FLAG_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def parse_value(key: str, value: Any) -> Any:
    """Turn a raw --data string into the typed answer (YAML for lists/mappings, int for seconds).

    Whitespace only is an empty answer for every key (Enter in a multi-line field adds a newline).
    """
    if isinstance(value, str) and not value.strip():
        value = ""
    if key in YAML_KEYS and isinstance(value, str):
        try:
            return yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem", None) or "not valid YAML"
            raise ValueError(f"is not valid YAML ({mark})") from None
    if key in INT_KEYS and isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError("is not an integer") from None
    return value


def _choice(value: Any, choices: tuple[str, ...] = (), **_: Any) -> str:
    return "" if value in choices else f"must be one of {', '.join(choices)}"


def _entry_main_module(value: Any, root: Path | None = None, **_: Any) -> str:
    if not isinstance(value, str) or not DOTTED_RE.match(value):
        return "must be a dotted module path such as mypkg.train"
    if root is None:  # a scratch render (copier update's temporary copies): nothing to resolve against
        return ""
    if module_file(root, value) is not None:
        return ""
    return f"resolves to no file in {root} (looked for {value.replace('.', '/')}.py, also under src/)"


def _cli_args(value: Any, entry_pattern: str | None = None, **_: Any) -> str:
    if value is None:
        return ""
    if entry_pattern == "hydra":
        if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
            return "must be a list of key=value strings for the hydra pattern, e.g. ['optimizer.lr=3e-4']"
        return ""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        return f"must be a mapping of argument names to values for the {entry_pattern or 'argparse-cli'} pattern, e.g. {{lr: 3e-4}}"
    return ""


def _option_name(what: str) -> Callable[..., str]:
    """An optional name of one of the host's options (no leading dashes), or empty."""

    def rule(value: Any, **_: Any) -> str:
        if value in ("", None):
            return ""
        if not isinstance(value, str) or value.startswith("-") or not FLAG_RE.match(value):
            return f"must be {what}, or empty"
        return ""

    return rule


_resume_flag = _option_name("a flag name without leading dashes (e.g. resume_from_checkpoint) or a Hydra key")
_knob_name = _option_name("the name of one of the host's options or constants without leading dashes")
_seed_key = _option_name("the host's seed option without leading dashes (e.g. seed, system.seed)")


def _file_name(value: Any, **_: Any) -> str:
    if value in ("", None):
        return ""
    if not isinstance(value, str) or "/" in value or "\\" in value or value.strip() in (".", ".."):
        return "must be a plain file name such as model.pt (no folder), or empty when the option names a folder"
    return ""


def _nonempty(what: str) -> Callable[..., str]:
    def rule(value: Any, **_: Any) -> str:
        return "" if isinstance(value, str) and value.strip() else f"must be a non-empty {what}"

    return rule


def _relative_glob(value: Any, required: bool = False, **_: Any) -> str:
    if value in ("", None):
        return "must be a glob relative to the project root, e.g. runs/*/events.out.tfevents.*" if required else ""
    if not isinstance(value, str):
        return "must be a string glob"
    if value.startswith(("/", "~")) or ".." in Path(value).parts:
        return "must stay inside the project root (no absolute path, no '..')"
    return ""


def _log_regex(value: Any, **_: Any) -> str:
    if value in ("", None):
        return ""
    try:
        compiled = re.compile(str(value).replace("{name}", "metric"))
    except re.error as exc:
        return f"is not a valid regex ({exc})"
    return "" if compiled.groups == 1 else f"must have exactly one capture group (has {compiled.groups})"


def _extract_code(value: Any, **_: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        return "must be a Python function body that returns dict[str, float]"
    try:
        compile_extract(value)  # the runner's own wrapping; defining the function runs none of its body
    except SyntaxError as exc:
        return f"is not valid Python ({exc.msg}, line {max(1, (exc.lineno or 2) - 1)})"
    return ""


def _evaluate_code(value: Any, **_: Any) -> str:
    if value in ("", None):
        return ""  # no independent evaluation: prepare.py says how to add it
    if not isinstance(value, str):
        return "must be a Python function body that returns dict[str, float]"
    body = "".join("    " + line if line.strip() else line for line in value.splitlines(keepends=True))
    try:
        compile(f"def evaluate(checkpoint_path):\n{body}\n", "evaluate_code", "exec")
    except SyntaxError as exc:
        return f"is not a valid Python function body ({exc.msg}, line {max(1, (exc.lineno or 2) - 1)})"
    return ""


def _globs(value: Any, **_: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        return "must be a list of globs relative to the project root, e.g. [data/splits/*.txt]"
    return next((f"entry {v!r} {r}" for v in value for r in [_relative_glob(v)] if r), "")


def _names(value: Any, **_: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() and "\n" not in v for v in value):
        return "must be a list of metric names, e.g. [test_loss]"
    return ""


def _constraints(value: Any, **_: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, list):
        return 'must be a list of "name op threshold" strings'
    for item in value:
        m = CONSTRAINT_RE.match(str(item))
        if not m:
            return f'entry {item!r} is not "name op threshold" with op one of <=, <, >=, >'
        try:
            float(m.group(3))
        except ValueError:
            return f"entry {item!r}: threshold {m.group(3)!r} is not a number"
    return ""


def _scope(value: Any, **_: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, list) or not all(isinstance(v, str) and DOTTED_RE.match(v) for v in value):
        return "must be a list of dotted paths such as mypkg.model.Block"
    return ""


def _seconds(value: Any, **_: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return "must be an integer > 0 (seconds per run)"
    return ""


def _slug(value: Any, root: Path | None = None, dst: Path | None = None, creating: bool = True, **_: Any) -> str:
    m = SLUG_RE.match(str(value))
    if not m:
        return "must be YYMMDD-kebab: six digits, a dash, lowercase ASCII words joined by dashes"
    try:
        _dt.datetime.strptime(m.group(1), "%y%m%d")
    except ValueError:
        return f"starts with {m.group(1)}, which is not a YYMMDD date"
    if len(m.group(2)) > 40:
        return f"kebab part is {len(m.group(2))} characters; at most 40 allowed"
    if creating and dst is not None and (dst / str(value)).exists():
        return f"folder {dst / str(value)} already exists; pick another slug (or update it with copier update)"
    return ""


def _free_text(value: Any, **_: Any) -> str:
    return "" if isinstance(value, str) and "\n" not in value else "must be one line of text"


def _parent_ckpt(value: Any, root: Path | None = None, **_: Any) -> str:
    if value in ("", None) or root is None:
        return ""
    path = Path(value) if Path(value).is_absolute() else root / value
    return "" if path.exists() else f"does not exist ({path}); chain from an experiment that has a best checkpoint"


# The rules by the name arunner.answers gives them (Answer.rule).
RULES_BY_NAME: dict[str, Callable[..., str]] = {
    "choice": _choice,
    "module": _entry_main_module,
    "cli_args": _cli_args,
    "flag": _resume_flag,
    "goal": _nonempty("goal"),
    "events_glob": lambda v, **kw: _relative_glob(v, required=True),
    "log_regex": _log_regex,
    "extract_code": _extract_code,
    "glob": _relative_glob,
    "metric_name": _nonempty("metric name"),
    "constraints": _constraints,
    "dotted_paths": _scope,
    "evaluate_code": _evaluate_code,
    "globs": _globs,
    "metric_names": _names,
    "seconds": _seconds,
    "seed_option": _seed_key,
    "knob": _knob_name,
    "file_name": _file_name,
    "launcher": _nonempty("launcher command such as python"),
    "one_line": _free_text,
    "slug": _slug,
    "parent_ckpt": _parent_ckpt,
}
RULES: dict[str, Callable[..., str]] = {a.name: RULES_BY_NAME[a.rule] for a in ANSWERS.values() if a.rule}


def check(key: str, value: Any, **context: Any) -> str:
    """The reason `value` is not allowed for `key`, or "" when it is."""
    rule = RULES.get(key)
    return rule(value, **{**context, "choices": ANSWERS[key].choices}) if rule else ""


def describe(key: str, value: Any, reason: str) -> str:
    shown = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()
    if len(str(shown)) > 80:
        shown = str(shown)[:77] + "..."
    return f"bad answer {key}={shown}: {reason}"
