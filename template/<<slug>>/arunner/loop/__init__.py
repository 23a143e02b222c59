"""The loop: what an iteration runs, and the one engine that runs it.

Modules, bottom-up (none imports one listed below it):
  plans        what an iteration runs: runs with a kind (candidate/repeat/confirm/remeasure) and owner
  steps        the steps of one run: allocate, command and environment, measure, commit
  engine       executes any plan: allocate, guard, launch, measure, integrity, decide, persist
  iteration    one `run`: the lock, repair of interrupted runs, the plans in order
"""
