"""The command line: one module per command (or per family of commands), and what they print.

Modules, bottom-up (none imports one listed below it):
  run_output   what `run` prints: one line per run (kind first), the decision
  proposals    `propose`, the queue's lines in `status`, the device settings of `session`
  plot         the progress figure of `report --plot` (matplotlib, imported when drawn)
  history      `history`: one line per idea tried
  report_html  `report --html`: one self-contained page
  inspect      `status`, `tail`, `report`
  upgrades     what an upgrade leaves: conflicts, the regenerated experiment.json, bytecode, rollback
  copier_cmds  `chain` and `upgrade` (drive Copier)
  cli          the command line and its command table
"""
