"""What keeps the judged agent from changing how it is judged.

Modules, bottom-up (none imports one listed below it):
  data_guard   what the evaluation reads: its modules, functions and data names, and reads of them
  protect      the protected-file manifest and the static guard on train.py
  evaluate     the independent evaluator process (prepare.py's evaluate)
  checks       the integrity calls a run makes (modes off/files/evaluator), `protect`
"""


def accept_upgrade(cfg) -> list[str]:
    """Re-record the protected files after an upgrade (lives in checks.py).

    Kept here because `ar.py upgrade` of a runner from before the layers were packages imports
    this name from `arunner.integrity` after Copier has already written the new files.
    """
    from .checks import accept_upgrade as accept

    return accept(cfg)
