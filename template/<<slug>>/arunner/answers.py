"""Every answer of the setup interview, declared once.

One `Answer` per key, in experiment.json's order: its type, where its default
comes from, the interview's rule that checks it, whether `copier update` keeps
it, and the help line the interview shows. experiment.json is rendered from
this table, `Config` loads it by this table, and the interview takes its types,
rules, choices and fallback defaults from here. The template's copier.yml asks
the questions in its own order and is checked against this table, as are
`Config`'s fields and the README's answer list.

A new answer: an `Answer` appended here (experiment.json only gains a line),
not `required` and with an `absent` value (experiments rendered before it lack
it), stored by `copier update` (never `when: false`); its question in copier.yml;
its field on `config.Config`; its key in the README's answer list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Copier's question types.
STR, YAML, INT = "str", "yaml", "int"

# Whether `copier update` keeps an answer (Copier stores exactly the answers whose `when` is true).
ALWAYS = "always"  # no `when`: asked and stored every time
IF_ASKED = "if asked"  # a `when` expression: stored whenever it applies, absent when it does not
NEVER = "never"  # `when: false`: never stored, re-derived on every update

# Where the interview's default comes from.
DETECTED = "detected"  # `ar_detected(...).<key>`: static analysis of the host; `default` when it finds nothing
LITERAL = "literal"  # `default` itself
DERIVED = "derived"  # computed from earlier answers (the direction from the metric, the slug from the topic)

NO_VALUE = object()  # `absent` of an answer that is always there when experiment.json is rendered


@dataclass(frozen=True)
class Answer:
    name: str
    type: str
    help: str  # the interview's help, one terminal line
    default: Any = ""  # LITERAL: the default; DETECTED: the fallback; DERIVED: unused
    source: str = LITERAL
    rule: str = ""  # the interview's check, by name (the template's answer_rules.RULES_BY_NAME; "" = none)
    choices: tuple = ()  # the allowed values, in the order error messages list them
    stored: str = ALWAYS
    in_config: bool = True  # rendered into experiment.json and loaded into Config
    absent: Any = NO_VALUE  # experiment.json's value when the answer is missing or null
    required: bool = False  # every experiment.json ever rendered holds it (else Config falls back to `absent`)


ENTRY_PATTERNS = ("argparse-cli", "hydra", "function", "custom")
CLI_STYLES = ("space", "equals", "constants")
FRAMEWORKS = ("accelerate", "deepspeed", "fsdp", "ddp", "lightning", "none", "auto")
METRIC_BACKENDS = ("wandb", "tensorboard", "log", "custom", "auto")
DIRECTIONS = ("min", "max")

ANSWERS: dict[str, Answer] = {
    a.name: a
    for a in (
        Answer(
            "topic",
            STR,
            "Short topic for the folder name (empty = derived from the goal)",
            rule="one_line",
            in_config=False,
        ),
        Answer(
            "slug",
            STR,
            "Experiment folder: YYMMDD-kebab, lowercase ASCII, kebab at most 40 characters",
            source=DERIVED,
            rule="slug",
            required=True,
        ),
        Answer(
            "entry_pattern",
            STR,
            "What shape is your training entry point?",
            default="argparse-cli",
            source=DETECTED,
            rule="choice",
            choices=ENTRY_PATTERNS,
            required=True,
        ),
        Answer(
            "entry_main_module",
            STR,
            "Dotted module of the entry point (must be a file in this project, e.g. mypkg.train)",
            source=DETECTED,
            rule="module",
            stored=IF_ASKED,
            absent="",
            required=True,
        ),
        Answer(
            "cli_style",
            STR,
            "How does the script read its settings?",
            default="space",
            source=DETECTED,
            rule="choice",
            choices=CLI_STYLES,
            stored=IF_ASKED,
            absent="space",
        ),
        Answer(
            "cli_args",
            YAML,
            "Baseline overrides the agent starts from (CLI_OVERRIDES): a mapping; key=value strings for hydra",
            default={},
            source=DETECTED,
            rule="cli_args",
            stored=IF_ASKED,
            absent=None,
            required=True,
        ),
        Answer(
            "resume_flag_name",
            STR,
            "Flag (without --) or Hydra key that resumes from a checkpoint; empty = none",
            source=DETECTED,
            rule="flag",
            stored=IF_ASKED,
            absent="",
            required=True,
        ),
        Answer(
            "distributed_framework",
            STR,
            "Distributed framework (auto = resolve at launch from the runner)",
            default="auto",
            source=DETECTED,
            rule="choice",
            choices=FRAMEWORKS,
            required=True,
        ),
        Answer(
            "goal",
            STR,
            "What should this experiment optimise for?",
            default="lower the validation loss",
            source=DETECTED,
            rule="goal",
            required=True,
        ),
        Answer(
            "metric_backend",
            STR,
            "How does training report the metric? (auto tries wandb, tensorboard, log per run)",
            default="auto",
            source=DETECTED,
            rule="choice",
            choices=METRIC_BACKENDS,
            required=True,
        ),
        Answer(
            "tb_events_glob",
            STR,
            "Glob of the TensorBoard event files, relative to the project root",
            default="runs/**/events.out.tfevents.*",
            source=DETECTED,
            rule="events_glob",
            stored=IF_ASKED,
            absent="",
            required=True,
        ),
        Answer(
            "log_metric_regex",
            STR,
            "Regex with one group capturing the value; {name} stands for the metric name",
            source=DETECTED,
            rule="log_regex",
            stored=IF_ASKED,
            absent="",
            required=True,
        ),
        Answer(
            "metric_extract_code",
            STR,
            "Python function body; gets run_dir: Path and run_log_text: str, returns dict[str, float]",
            default="return {}",
            rule="extract_code",
            stored=IF_ASKED,
            absent="",
            required=True,
        ),
        Answer(
            "checkpoint_glob",
            STR,
            "Where training saves checkpoints, a glob relative to the project root (empty = none)",
            source=DETECTED,
            rule="glob",
            absent="",
            required=True,
        ),
        Answer(
            "primary_metric",
            STR,
            "The single metric that decides whether a run improved",
            default="eval/loss",
            source=DETECTED,
            rule="metric_name",
            required=True,
        ),
        Answer(
            "primary_direction",
            STR,
            "Is lower or higher better?",
            source=DERIVED,
            rule="choice",
            choices=DIRECTIONS,
            required=True,
        ),
        Answer(
            "hard_constraints",
            YAML,
            'Hard constraints, a list of "name op threshold" (op: <= < >= >); a violation makes a run invalid',
            default=[],
            rule="constraints",
            absent=[],
            required=True,
        ),
        Answer(
            "mutation_scope",
            YAML,
            "Modules/classes train.py may monkey-patch (advisory), a list of dotted paths",
            default=[],
            source=DETECTED,
            rule="dotted_paths",
            absent=[],
            required=True,
        ),
        Answer(
            "seconds",
            INT,
            "Per-run time budget in seconds (a host that caps its own time gets that cap plus a margin)",
            default=300,
            source=DETECTED,
            rule="seconds",
            required=True,
        ),
        Answer(
            "runner",
            STR,
            "Launcher prefix, verbatim (python, torchrun --nproc-per-node 2, uv run python, ...)",
            default="python",
            source=DETECTED,
            rule="launcher",
            required=True,
        ),
        Answer(
            "wandb_project",
            STR,
            "wandb project the runs log to (optional)",
            source=DETECTED,
            rule="one_line",
            stored=IF_ASKED,
            absent="",
            required=True,
        ),
        Answer("parent_expr", STR, "Parent experiment (chained)", rule="one_line", stored=IF_ASKED, absent=""),
        Answer(
            "parent_ckpt", STR, "Parent's best checkpoint (chained)", rule="parent_ckpt", stored=IF_ASKED, absent=""
        ),
        Answer(
            "evaluate_code",
            STR,
            "Body of prepare.py's evaluate(checkpoint_path) -> dict[str, float] (empty = no independent check)",
            source=DETECTED,
            rule="evaluate_code",
            absent="",
        ),
        Answer(
            "protected_globs",
            YAML,
            "Extra files the agent must not change (data splits, configs): globs relative to the project root",
            default=[],
            rule="globs",
            absent=[],
        ),
        Answer(
            "holdout_metrics",
            YAML,
            "Metrics evaluate() returns that the agent is never shown (a check on overfitting), a list of names",
            default=[],
            rule="metric_names",
            absent=[],
        ),
        Answer(
            "seed_key",
            STR,
            "Host option that sets the random seed (repeats vary it); empty = none",
            source=DETECTED,
            rule="seed_option",
            absent="",
        ),
    )
}

CONFIG_KEYS = tuple(name for name, a in ANSWERS.items() if a.in_config)  # experiment.json's answers, in order
