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
STR, YAML, INT, BOOL = "str", "yaml", "int", "bool"

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
            "Experiment folder: YYMMDD-kebab, lowercase ASCII, kebab <= 40 characters",
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
            "Dotted module of the entry point, a file of this project (mypkg.train)",
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
            "Baseline overrides (CLI_OVERRIDES): a mapping; hydra: a list of k=v",
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
            "Option (no --) or Hydra key that resumes a checkpoint; empty = none",
            source=DETECTED,
            rule="flag",
            stored=IF_ASKED,
            absent="",
            required=True,
        ),
        Answer(
            "distributed_framework",
            STR,
            "Distributed framework (auto = decided at launch from the runner)",
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
            "How does training report the metric? (auto: wandb, tensorboard, log)",
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
            "Regex with one group capturing the value ({name} = the metric)",
            source=DETECTED,
            rule="log_regex",
            stored=IF_ASKED,
            absent="",
            required=True,
        ),
        Answer(
            "metric_extract_code",
            STR,
            "Metric extraction body (README: custom backend); Enter keeps it",
            default="return {}",
            rule="extract_code",
            stored=IF_ASKED,
            absent="",
            required=True,
        ),
        Answer(
            "checkpoint_glob",
            STR,
            "Glob of the checkpoints training saves (empty = none)",
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
            'Hard constraints, a list of "name op threshold" (op: <= < >= >)',
            default=[],
            rule="constraints",
            absent=[],
            required=True,
        ),
        Answer(
            "mutation_scope",
            YAML,
            "Modules/classes train.py may monkey-patch, a list of dotted paths",
            default=[],
            source=DETECTED,
            rule="dotted_paths",
            absent=[],
            required=True,
        ),
        Answer(
            "seconds",
            INT,
            "Per-run time budget in seconds",
            default=300,
            source=DETECTED,
            rule="seconds",
            required=True,
        ),
        Answer(
            "runner",
            STR,
            "Launcher prefix, verbatim (python, torchrun --nproc-per-node 2, ...)",
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
            "prepare.py evaluate() body (README: Metric integrity); Enter keeps it",
            source=DETECTED,
            rule="evaluate_code",
            absent="",
        ),
        Answer(
            "protected_globs",
            YAML,
            "Extra files the agent must not change, a list of globs",
            default=[],
            rule="globs",
            absent=[],
        ),
        Answer(
            "holdout_metrics",
            YAML,
            "Metrics evaluate() returns that the agent never sees, a list",
            default=[],
            source=DETECTED,
            rule="metric_names",
            absent=[],
        ),
        Answer(
            "seed_key",
            STR,
            "Option that sets the random seed (repeats vary it); empty = none",
            source=DETECTED,
            rule="seed_option",
            absent="",
        ),
        Answer(
            "output_key",
            STR,
            "Option that sets where training writes its outputs (empty = none)",
            source=DETECTED,
            rule="knob",
            absent="",
        ),
        Answer(
            "output_fixed",
            YAML,
            "Paths written that no option moves (a list, from the project root)",
            default=[],
            source=DETECTED,
            rule="globs",
            absent=[],
        ),
        Answer(
            "length_key",
            STR,
            "Option that limits training steps or epochs (empty = none)",
            source=DETECTED,
            rule="knob",
            absent="",
        ),
        Answer(
            "time_key",
            STR,
            "Option that caps training time, set to each run's budget (empty = none)",
            source=DETECTED,
            rule="knob",
            absent="",
        ),
        Answer(
            "output_file",
            STR,
            "File the output option names, e.g. model.pt (empty = a folder)",
            source=DETECTED,
            rule="file_name",
            stored=IF_ASKED,
            absent="",
        ),
        Answer(
            "edit_code",
            BOOL,
            "Write Python answers (evaluate, metric extraction) in a multi-line editor?",
            default=False,
            in_config=False,
        ),
    )
}

CONFIG_KEYS = tuple(name for name, a in ANSWERS.items() if a.in_config)  # experiment.json's answers, in order
