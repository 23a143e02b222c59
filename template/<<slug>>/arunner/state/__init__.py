"""What the loop keeps on disk, and the texts it writes into records.

Modules, bottom-up (none imports one listed below it):
  record       the result record and the best record
  results      RunStart and RunResult: a run's kind, what it belongs to, its notes as fields
  checkpoints  discovery and capture (O(1) moves), pruning and its tally
  best         the best run: atomic promotion, read, crash repair
  ledger       results.tsv and result.json
  tally        the ledger's running summary (.ar-tally.json): termination, plateau, counts
  noise_groups the noise rule's state (.ar-noise.json): groups, spread, what the best still needs
  messages     what the agent is told: project-root paths, budget and counts, the stop refusal
  snapshots    train.py per run, and the restore after a non-advance
  changes      what a run changed against its best (change.json, train.diff, .ar-changes.tsv)
  candidates   the queue of proposed train.py versions
"""
