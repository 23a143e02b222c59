"""The runner of this experiment: standard library plus psutil when installed (the
tensorboard backend imports tensorboard's event schema only when it finds event files).

Layers, one package each, listed bottom-up; a module imports only from packages above its
own in this list, and within its package only modules listed above it in that package's
map (tests/test_layers.py checks both; some imports are lazy, for speed):
  core/        errors, text, files, run ids, seals, the answers and the experiment's config
  rules/       pure decisions: outcomes table, noise rule, seed-only rule, termination, decide()
  state/       what the loop keeps on disk: run records, ledger, tally, best, snapshots, queue
  procs/       processes: the watchdog, one launch, device slots, the pool of slots, Slurm
  metrics/     reading a finished run's metric: wandb, tensorboard, log regex, custom, auto
  integrity/   the protected-file manifest, the static guard, the sealed evaluator
  loop/        plans, the one engine that executes them, one `run`
  commands/    one module per command of ar.py, and what `run` prints

hostentry.py and module_split.py stay at the top of the package: train.py loads hostentry by
path inside the training process, and hostentry loads module_split from its own folder
(standard library only; they import nothing else from the runner).
"""
