"""The interview's defaults from static analysis of the host (the logic behind `ar_detected`).

The analysis lives in the `detection` package beside this file and returns a
`detection.Findings`; this module only turns it into ready-to-use answers.
Read-only and bounded: never imports or runs host code. Results are cached on
the class per host root (Copier renders several times per command). In a
scratch render (copier update's temporary copies) there is no host to read:
the literal defaults below stand. Every detected default is checked with the
interview's own rules; one that would not pass falls back to its literal
default, so `copier copy --defaults` never fails on a detection guess.

The first computation per host prints a short summary of what was found (and
where) on stderr, so it shows before the first question and with --defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path

import answer_rules
import hostpaths
import yaml
from direction import ar_direction
from jinja2 import pass_context

import detection
from arunner.core.answers import ANSWERS, DETECTED, YAML
from detection.arguments import hydra_item
from detection.commands import CONFIG_FILE_SUFFIXES
from detection.evaluation import propose_evaluate
from detection.sources import scalar


def _as_default(key: str, value):
    """A YAML answer as the flow text copier.yml's default renders (cli_args has cli_args_for)."""
    if ANSWERS[key].type == YAML and key != "cli_args" and not isinstance(value, str):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return value


# The answer a key gets when detection finds nothing (or there is no host to read): the
# fallback of every detected answer that detection.Findings carries (the others are properties).
LITERAL = {
    name: _as_default(name, a.default)
    for name, a in ANSWERS.items()
    if a.source == DETECTED and name in detection.Findings.__dataclass_fields__
}
KEYS = tuple(LITERAL)
ANSWER_KEYS = tuple(ANSWERS)  # shown by --pretend
# Per host root (and corrected entry module): Copier renders several times per command. Kept in
# this plain module, imported by name, because Copier loads each extension file under its own name.
CACHE: dict = {}
# "" found = "" answered
EMPTY_IS_AN_ANSWER = (
    "resume_flag_name",
    "checkpoint_glob",
    "wandb_project",
    "output_key",
    "output_file",
    "length_key",
    "time_key",
)


class Detected:
    """What detection found; every attribute is a ready-to-use interview default."""

    log_metric_regex = ""  # empty = the runner's built-in rule (name=value, name: value, name value)
    corrected = False  # derived for an entry module the person gave, not the one detection chose

    def __init__(self, root: Path | None):
        self.root = root
        for key, value in LITERAL.items():
            setattr(self, key, value)
        self.found = detection.Findings()
        self.notes: list[str] = []
        if root is not None:
            self._detect(Path(root))

    # The Findings fields the interview shows or tests read, under one name each.
    confidence = property(lambda self: self.found.confidence)
    candidates = property(lambda self: self.found.candidates)
    stats = property(lambda self: self.found.stats)
    knobs = property(lambda self: self.found.knobs)
    knobs_open = property(lambda self: self.found.knobs_open)
    where = property(lambda self: self.found.where)

    @property
    def seed_key(self) -> str:
        """The host's seed option among its knobs (`seed` wins over `data_seed` & co); "" when none."""
        names = [str(k["name"]).lstrip("-") for k in self.knobs]
        last = {n: n.lower().rsplit(".", 1)[-1] for n in names}
        seedy = [n for n in names if last[n] == "seed" or last[n].endswith("_seed")]
        return next((n for n in seedy if last[n] == "seed"), seedy[0] if seedy else "")

    def _detect(self, root: Path) -> None:
        try:
            self.found = detection.analyse(root, ar_direction)
        except Exception as exc:  # noqa: BLE001 - a detection bug must never block the setup
            self.notes.append(f"detection failed ({type(exc).__name__}: {exc}); literal defaults used")
            return
        self.notes = list(self.found.notes)
        for key in KEYS:
            value = getattr(self.found, key)
            value = _as_default(key, value)
            if value in ("", None) and key not in EMPTY_IS_AN_ANSWER:
                continue  # nothing found: keep the literal default
            setattr(self, key, value)
        self._keep_valid(root if hostpaths.is_project_root(root) else None)

    def _keep_valid(self, root: Path | None) -> None:
        """Put back the literal default of any detected value the interview would refuse."""
        for key in KEYS:
            if key == "entry_main_module" and self.entry_pattern == "custom":
                continue  # not asked for the custom pattern (and may be empty)
            raw = self.cli_args_for(self.entry_pattern) if key == "cli_args" else getattr(self, key)
            try:
                value = answer_rules.parse_value(key, raw)
                reason = answer_rules.check(key, value, root=root, entry_pattern=self.entry_pattern)
            except ValueError as exc:
                reason = str(exc)
            if reason:
                self.notes.append(f"detected {key}={raw!r} dropped: {reason}")
                if key == "entry_main_module":
                    self.entry_pattern, self.entry_main_module = "custom", ""  # custom asks for no module
                else:
                    setattr(self, key, LITERAL[key])

    def _output_lines(self) -> list[str]:
        """Where the host writes, how long it trains, what caps its time: the knobs the runner sets."""
        found = self.found.output
        if self.output_key:
            known = found.key == self.output_key and found.key_default is not None
            default = f", default {found.key_default!r}" if known else ""
            out = f"{self.output_key}{default} ({found.key_source or 'your answer'}): each run gets its own folder"
        else:
            out = "no knob found"
        lines = [f"  outputs      {out}"]
        fixed = yaml.safe_load(self.output_fixed) if isinstance(self.output_fixed, str) else self.output_fixed
        for path in fixed or []:
            source = found.fixed_source.get(path, "")
            lines.append(f"  fixed path   {path}{f' ({source})' if source else ''}: written by every run, not per run")
        if self.length_key:
            text = f"{self.length_key}, default {found.length_default!r}"
            if found.forever:
                text += " = trains forever"
                given = self._given(self.length_key)
                if given is not None and given == found.proposed:
                    text += f": the baseline proposes {given!r} (change it in cli_args)"
                elif given is not None and given != found.length_default:
                    text += f"; the baseline sets {given!r}"
                else:
                    text += f": set {self.length_key} in cli_args or every run ends at the time budget"
            lines.append(f"  length       {text}")
        else:
            lines.append("  length       no step/epoch limit knob found")
        if self.seed_key:
            default = next((k["default"] for k in self.knobs if str(k["name"]).lstrip("-") == self.seed_key), None)
            lines.append(f"  seed         {self.seed_key}{f', default {default!r}' if default is not None else ''}")
        elif self.found.seed_fixed:
            lines.append(
                f"  seed         no seed knob: the host fixes its seed at {self.found.seed_fixed}; "
                "repeats vary only what the seed cannot"
            )
        if self.time_key:
            lines.append(
                f"  time cap     {self.time_key}, default {self.found.output.time_default!r}: gets the run's budget"
            )
        return lines

    def _given(self, key: str):
        args = yaml.safe_load(self.cli_args_for(self.entry_pattern)) or {}
        if isinstance(args, list):
            args = dict(str(a).lstrip("+~").split("=", 1) for a in args if "=" in str(a))
        return args.get(key)

    @property
    def evaluator(self) -> tuple:
        """(proposed body of prepare.py's evaluate() or None, why): read from the host, computed once."""
        if "_evaluator" not in self.__dict__:
            if self.root is None or not self.entry_main_module:
                self._evaluator = (None, "no entry module to follow")
            else:
                try:
                    self._evaluator = propose_evaluate(Path(self.root), self.entry_main_module)
                except Exception as exc:  # noqa: BLE001 - a detection bug must never block the setup
                    self._evaluator = (None, f"proposal failed ({type(exc).__name__}: {exc})")
        return self._evaluator

    evaluate_code = property(lambda self: self.evaluator[0] or "")

    def cli_args_for(self, pattern: str) -> str:
        """cli_args as YAML for `pattern`: key=value strings for hydra, a mapping otherwise.

        Custom gets {}: the question is not asked for it, and an unconfirmed guess
        must not land in train.py unseen.
        """
        args = self.cli_args if pattern != "custom" else {}
        if pattern == "hydra" and isinstance(args, dict):
            args = [hydra_item(k, v) for k, v in args.items()]
        if pattern != "hydra" and isinstance(args, list):
            args = {k.lstrip("+~"): scalar(v) for k, v in (a.split("=", 1) for a in args if "=" in a)}
        return yaml.safe_dump(args, default_flow_style=True, sort_keys=False, width=1 << 16).strip()

    def for_module(self, module: str) -> Detected:
        """The detection for another entry module (the person corrected it): its dependent answers."""
        if not module or module == self.entry_main_module or self.root is None:
            return self
        key = (str(self.root), module)
        if key not in CACHE:
            other = Detected.__new__(Detected)
            other.root, other.corrected = self.root, True
            for name, value in LITERAL.items():
                setattr(other, name, value)
            other.notes = []
            try:
                other.found = detection.analyse(Path(self.root), ar_direction, entry_module=module)
            except Exception as exc:  # noqa: BLE001 - as in _detect
                other.found = detection.Findings()
                other.notes.append(f"detection failed ({type(exc).__name__}: {exc}); literal defaults used")
            else:
                other.notes = list(other.found.notes)
                for name in KEYS:
                    value = _as_default(name, getattr(other.found, name))
                    if value not in ("", None) or name in EMPTY_IS_AN_ANSWER:
                        setattr(other, name, value)
                root = Path(self.root)
                other._keep_valid(root if hostpaths.is_project_root(root) else None)
            CACHE[key] = other
        return CACHE[key]

    def holdout_metrics_for(self, primary: str) -> str:
        """holdout_metrics' default once primary_metric is answered: never the metric being optimised."""
        found = yaml.safe_load(self.holdout_metrics) if isinstance(self.holdout_metrics, str) else []
        if primary != self.primary_metric:
            found = [] if primary and "test" in primary.lower() else found
        return yaml.safe_dump([m for m in found or [] if m != primary], default_flow_style=True).strip()

    def summary(self) -> str:
        """A few lines for the person confirming the defaults: what was found and where."""
        where = self.where
        head = "detected (static analysis, nothing run; every answer below can be changed)"
        lines = [f"{head}, for the entry module you gave:" if self.corrected else f"{head}:"]
        if self.entry_pattern == "custom" or not self.entry_main_module:
            lines.append(
                "  entry point  none found: answer entry_main_module (a module of this project), "
                "or pick custom and wire run_host() in train.py"
            )
        else:
            style = {"space": ", --k v", "equals": ", --k=v", "constants": ", module constants"}.get(self.cli_style, "")
            shape = self.entry_pattern + (style if self.entry_pattern == "argparse-cli" else "")
            lines.append(f"  entry point  {self.entry_main_module} [{shape}] {where.get('entry', '')}")
        metric_from = where.get("metric", "")
        lines.append(
            f"  metric       {self.primary_metric} ({ar_direction(self.primary_metric)}) "
            f"via {self.metric_backend}{', ' + metric_from if metric_from else ''}"
        )
        holdout = yaml.safe_load(self.holdout_metrics) if isinstance(self.holdout_metrics, str) else None
        if holdout:
            lines.append(
                f"  holdout      {', '.join(holdout)}: a test metric, proposed as holdout_metrics (never optimised)"
            )
        ckpt = f"{self.checkpoint_glob} ({where['checkpoint']})" if self.checkpoint_glob else "none found"
        lines.append(f"  checkpoint   {ckpt}")
        lines += self._output_lines()
        lines.append(f"  runner       {self.runner} ({where.get('runner', 'default')})")
        lines.append(f"  budget       {where.get('budget', f'{self.seconds} s')}")
        code, why = self.evaluator
        lines.append(
            f"  evaluator    proposed: {why}"
            if code
            else f"  evaluator    none proposed ({why}); runs are judged on what training prints unless you "
            "write evaluate_code"
        )
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@pass_context
def ar_show_answers(context, conf) -> str:
    """With --pretend, print the answers the copy would use (nothing is written then)."""
    if not hostpaths.conf_value(conf, "pretend", False):
        return ""
    answers = {k: v for k, v in context.get_all().items() if k in ANSWER_KEYS}
    print("answers it would use (--pretend: nothing written):", file=sys.stderr)
    for key, value in answers.items():
        shown = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True, width=1 << 16)
        shown = str(shown).strip().removesuffix("\n...")  # a bare number is a YAML document: no end marker
        print(f"  {key}: {shown}", file=sys.stderr)
    return ""


def unknown_overrides(conf, module: str, style: str, args) -> list[str]:
    """CLI_OVERRIDES keys the entry point does not accept (empty when what it accepts is not fully known)."""
    if not isinstance(args, dict) or not args:
        return []
    found = detected(conf, module).found
    names = {k["name"] for k in found.knobs}
    if not names or found.knobs_open:
        return []
    return [k for k in args if k not in names and not (args[k] is True and str(k).endswith(CONFIG_FILE_SUFFIXES))]


def detected(conf, module: str = "") -> Detected | Recorded:
    """The detection for this host; `module`, when the person changed the entry, re-derived for it.

    An entry module given with --data counts from the first question on (entry_pattern's default
    is derived from it too), and the summary printed is the one for it: what the copy will use.
    During `copier update` the experiment's recorded answers come first (see `Recorded`).
    """
    root = hostpaths.host_root(conf)
    given = str((hostpaths.conf_value(conf, "data") or {}).get("entry_main_module") or "")
    key = str(root)
    if key not in CACHE:
        CACHE[key] = Detected(root)
    found = CACHE[key].for_module(module or given)
    recorded = hostpaths.recorded_answers(conf)
    if recorded:
        return Recorded(found, recorded)  # an update: nothing is guessed again, no summary
    if root is not None and (key, found.entry_main_module) not in PRINTED:
        if not PRINTED or found.entry_main_module != CACHE[key].entry_main_module:
            print(found.summary(), file=sys.stderr)  # first, then once more for each corrected entry module
        PRINTED.add((key, found.entry_main_module))
    return found


PRINTED: set = set()  # (host root, entry module) whose summary was printed


class Recorded:
    """Detection seen through an experiment's recorded answers (experiment.json) during an update.

    An answer missing from .copier-answers.yml (hidden in an older template version, or not asked
    for this entry pattern) keeps the value the experiment runs with instead of a fresh guess.
    Answers the experiment never had (added by a later template version) come from detection.
    """

    def __init__(self, found: Detected, recorded: dict):
        self._found = found
        self._recorded = {k: v for k, v in recorded.items() if k in RECORDED_KEYS and v is not None}

    def __getattr__(self, name: str):
        if name in self._recorded:
            value = self._recorded[name]
            return yaml.safe_dump(value, default_flow_style=True).strip() if name == "mutation_scope" else value
        return getattr(self._found, name)

    def cli_args_for(self, pattern: str) -> str:
        if "cli_args" not in self._recorded:
            return self._found.cli_args_for(pattern)
        return yaml.safe_dump(
            self._recorded["cli_args"], default_flow_style=True, sort_keys=False, width=1 << 16
        ).strip()


# The answers experiment.json records whose defaults come from detection (ar_detected(...).key).
RECORDED_KEYS = tuple(name for name, a in ANSWERS.items() if a.source == DETECTED and a.in_config)
