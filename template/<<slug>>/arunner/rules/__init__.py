"""Pure decisions over values already measured: no process, and no file but the rule log.

Modules, bottom-up (none imports one listed below it):
  sandbox      a sandbox-only edit that measured the best's value bit for bit: the note
  verdict      status x verdict table, constraints, termination
  noise        the run-to-run spread and the noise rule (advance / revert / confirm)
  gates        only a person at a terminal changes the rules; the record of rule changes
  seeds        the seed of a re-run, and "only a seed changed is not an improvement"
  decide       the one decision on a plan's runs: outcomes, noise rule, seed-only rule, one winner
"""
