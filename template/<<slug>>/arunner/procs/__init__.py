"""Processes and where they run: one launcher interface, one outcome type.

Modules, bottom-up (none imports one listed below it):
  workdir      a run's own working folder mirroring the project (fixed output paths)
  outputs      every run's outputs in its own folder: output_key, working folders, where measure reads
  watchdog     process-tree collection, kill, sweep by environment marker
  launch       start one training run, enforce the budget, live line
  slots        device slots leased machine-wide (flock per device)
  slot_pool    runs prepared jobs at once, one per free slot (a plan of one: in this thread)
  slurm        the Slurm launcher: one run as one batch job
"""
