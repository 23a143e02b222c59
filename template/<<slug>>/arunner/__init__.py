"""Vendored autoresearch runner: stdlib + psutil only (tensorboard only for its backend).

One module per job:
  errors      UserError, the one-line message for anything the user can fix
  fsutil      atomic writes and checked reads of state files
  config      the experiment's rendered config and the session settings
  watchdog    process-tree collection, kill, sweep by environment marker
  launch      start one training run, enforce the budget, live line
  metrics/    wandb, tensorboard, log regex, custom and auto backends
  checkpoints discovery and capture (O(1) moves), pruning
  best        the best run: atomic promotion, read, crash repair
  verdict     status x verdict table, constraints, termination
  ledger      results.tsv and result.json
  snapshots   train.py per run, and the restore after a non-advance
  iteration   one `run`, start to finish, plus repair of interrupted runs
  inspect_cmds status, tail, report, chain
  cli         the command line
"""
