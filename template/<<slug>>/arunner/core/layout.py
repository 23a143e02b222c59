"""Every file name of an experiment and of its runs, named once; `Layout(expr_dir)` (or
`cfg.layout`) joins the ones read from many places onto the experiment folder.

Nothing else in the runner spells a file name of the experiment. Dot files are the runner's
own state (git-ignored by `.ar-*`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# ---------------------------------------------------------------- the experiment folder
CONFIG_FILE = "experiment.json"  # the rendered answers (copier writes it; the runner only reads)
SESSION_FILE = ".ar-session.json"  # `ar.py session` settings: devices, noise rule, integrity mode
TRAIN_PY = "train.py"  # the one file the agent edits
PREPARE_PY = "prepare.py"  # the metric contract (and the evaluator, when it has one)
RUNNER_DIR = "arunner"
LEDGER = "results.tsv"  # one row per finished run: the history a person reads
TALLY_FILE = ".ar-tally.json"  # the ledger's running summary: termination, plateau, counts
NOISE_FILE = ".ar-noise.json"  # the noise rule's groups and spread
SEALS = ".ar-seals.json"  # keyed seals over the ledger, the best and the manifest
CHANGES_INDEX = ".ar-changes.tsv"  # one line per run: what it changed against its best
RULES_LOG = ".ar-rules.jsonl"  # every change of the rules, and who made it
LOCK = ".ar-lock"  # one `ar.py run` at a time
SENTINEL = ".ar-unclean"  # blocks runs while processes of a killed run survive
MANIFEST = ".ar-protected.json"  # the protected files' hashes
MANIFEST_BEFORE = ".ar-protected.before-upgrade.json"  # what `upgrade --rollback` puts back
RENDERED = ".ar-rendered-experiment.json"  # the real render's experiment.json (git-ignored)
PENDING = ".ar-upgrade-conflicts"  # files still holding conflict markers after an upgrade
BASELINE = ".ar-baseline.py"  # train.py as rendered: the first baseline's program
PRUNED = ".ar-pruned.json"  # running tally of pruned checkpoints, shown by `status`
RUN_INDEX = ".ar-runs.json"  # the highest run number, true while runs/ is as stamped there (skips a listing)
WAVE_FILE = ".ar-wave.json"  # exists while a wave of queued candidates is in flight
QUEUE_DIR = "queue"  # proposed train.py versions waiting for a wave
RUNS_DIR = "runs"  # runs/rNNNN/, one folder per run
LINK = "best.json"  # the best run's record
BEST = "best_ckpt"  # the best run's checkpoint, promoted atomically
STAGING = "best_ckpt.staging"
TRASH = "best_ckpt.trash"
OLD_PREFIX = ".ckpt-old-"  # previous bests waiting for drop_old
META = "meta.json"  # in best_ckpt/: which run it came from
REPORT = "report.html"
PLOT = "progress.png"

# ---------------------------------------------------------------- one run's folder
RUN_LOG = "run.log"
RESULT = "result.json"
STARTED = "started.json"  # kind, what it belongs to, seed: written before launch
CKPT = "ckpt"  # the run's captured checkpoint
CAPTURE_FILE = ".capture.json"
PARTIAL = ".ckpt-partial"
HELD_DIR = ".ckpt-held"
TRASH_DIR = ".ckpt-trash"
JOB_FILE = ".slurm_job"  # the Slurm job id, written right after sbatch (a dot file: never a checkpoint)
CANDIDATE = "candidate"  # a queued candidate's folder, moved here while it runs
CHANGE_FILE = "change.json"
DIFF_FILE = "train.diff"
WORK = "work"  # the run's own working folder (a host that saves to fixed paths)
OUT = "out"  # the host's output folder when output_key is set
EVAL_LOG = "eval.log"
DECISION = "decision.json"  # the run's decision, sealed before it is committed: what repair finishes
CHAIN_DECISION = "chain_decision.json"  # in a chained experiment: why, and from which parent best
SLURM_CHECK_PREFIX = ".ar-slurm-check-"  # a probe file `session --slurm` writes through a job
RUNNER_FILES = ("ar.py", PREPARE_PY, CONFIG_FILE)  # the protected runner files, plus everything under arunner/
# Names the runner keeps in a run folder; everything else there is the host's (never a checkpoint).
RUN_OWN_NAMES = frozenset({TRAIN_PY, RUN_LOG, DECISION, RESULT, CKPT, "wandb", CANDIDATE, WORK})


@dataclass(frozen=True)
class Layout:
    """The experiment folder, and the files of it that many modules read."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def train_py(self) -> Path:
        return self.root / TRAIN_PY

    @property
    def prepare_py(self) -> Path:
        return self.root / PREPARE_PY

    @property
    def ledger(self) -> Path:
        return self.root / LEDGER

    @property
    def runs(self) -> Path:
        return self.root / RUNS_DIR
