"""The bottom layer: what every other layer needs, and nothing about how runs are judged.

Modules, bottom-up (none imports one listed below it):
  errors       UserError, the one-line message for anything the user can fix
  text         trimming free text to one line
  digests      sha1, sha256 and HMAC-SHA256; OpenSSL (hashlib) loaded only for large data
  pysource     Python source parsed once per process for each distinct text (the checks share the trees)
  layout       every file name of an experiment and of its runs, named once; Layout
  fsutil       atomic writes, checked reads, file tails, removal
  chain_hash   the runner's keyed seals over its state (best, decisions, manifest), its key
  ledger_seal  results.tsv's seal: an HMAC per block of rows, so an append hashes only the last
  logtail      a run log's traceback: the exception it ends with, foreign frames folded
  runs         run ids (rNNNN), the runs/ layout and its signed index (one listing per run at most)
  answers      every answer of the setup interview, declared once (type, default, rule, storage)
  config       the experiment's rendered config and the session settings
"""
