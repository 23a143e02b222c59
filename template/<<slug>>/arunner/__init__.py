"""The runner of this experiment: standard library plus psutil when installed (the
tensorboard backend imports tensorboard's event schema only when it finds event files).

One module per job; none imports a module listed below it (tests/test_layers.py checks it;
some import a lower one lazily, for speed):
  errors       UserError, the one-line message for anything the user can fix
  text         trimming free text to one line
  fsutil       atomic writes, checked reads, file tails, removal
  hostentry    loaded by train.py in the training process: the entry module loaded once, so the
               sandbox patches what training uses (standard library only, imports nothing here)
  sandbox      a sandbox-only edit that measured the best's value bit for bit: the note
  workdir      a run's own working folder mirroring the project (fixed output paths)
  chain_hash   the runner's keyed seals over its state (results.tsv, best, decisions, manifest)
  logtail      a run log's traceback: the exception it ends with, foreign frames folded
  runs         run ids (rNNNN), the runs/ layout and its signed index (a listing skipped)
  answers      every answer of the setup interview, declared once (type, default, rule, storage)
  config       the experiment's rendered config and the session settings
  outputs      every run's outputs in its own folder: output_key, working folders, where measure reads
  verdict      status x verdict table, constraints, termination
  noise        the run-to-run spread and the noise rule (advance / revert / confirm)
  gates        only a person at a terminal changes the rules; the record of rule changes
  seeds        the seed of a re-run, and "only a seed changed is not an improvement"
  decide       the one decision on a plan's runs: outcomes, noise rule, seed-only rule, one winner (pure)
  record       the result record and the best record
  results      RunStart and RunResult: a run's kind, what it belongs to, its notes as fields
  watchdog     process-tree collection, kill, sweep by environment marker
  launch       start one training run, enforce the budget, live line
  metrics/     wandb, tensorboard, log regex, custom and auto backends
  checkpoints  discovery and capture (O(1) moves), pruning and its tally
  best         the best run: atomic promotion, read, crash repair
  ledger       results.tsv and result.json
  tally        the ledger's running summary (.ar-tally.json): termination, plateau, counts
  noise_state  the noise rule's state (.ar-noise.json): groups, spread, what the best still needs
  messages     what the agent is told: project-root paths, budget and counts, the stop refusal
  snapshots    train.py per run, and the restore after a non-advance
  changes      what a run changed against its best (change.json, train.diff, .ar-changes.tsv), same-program refusal
  protect      the protected-file manifest and the static guard on train.py
  evaluate     the independent evaluator process (prepare.py's evaluate)
  integrity    the integrity calls a run makes (modes off/files/evaluator), `protect`
  slots        device slots leased machine-wide (flock per device)
  candidates   the queue of proposed train.py versions
  wave         a pool of slots: runs several at once, one per free slot (a plan of one: this thread)
  slurm        the Slurm launcher: one run as one batch job
  plans        what an iteration runs: runs with a kind (candidate/repeat/confirm/remeasure) and owner
  steps        the steps of one run: allocate, command and environment, measure, commit
  engine       executes any plan: allocate, guard, launch, measure, integrity, decide, persist
  iteration    one `run`: the lock, repair of interrupted runs, the plans in order
  output       what `run` prints: one line per run (kind first), the decision
  wave_cmds    `propose`, the wave lines of `status`, the wave settings of `session`
  plot         the progress figure of `report --plot` (matplotlib, imported when drawn)
  history_cmd  `history`: one line per idea tried
  report_html  `report --html`: one self-contained page
  inspect_cmds status, tail, report
  upgrades     what an upgrade leaves: conflicts, the regenerated experiment.json, bytecode, rollback
  copier_cmds  chain and upgrade (drive Copier)
  cli          the command line and its command table
"""
