"""The log backend: metric values printed in run.log, found with a regex.

The last match in the log wins (a metric printed by several ranks, or once per
epoch, ends with the value printed last). Progress bars join lines with `\\r`,
so `\\r` counts as a line break. Only a bounded tail of the log is read: chunks
from the end toward the start, at most TAIL_BYTES while looking for the
constraint metrics and at most MAX_BYTES while the primary is still missing,
so a 1 GB log costs the same as a small one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..core.fsutil import read_tail

# `{name}` is replaced by re.escape(metric name). The name must not continue a
# longer name on either side (`eval/loss` does not match `my_eval/loss=` nor
# `eval/loss_ema=`); a quote may close it (`'eval_loss': 0.5`, HF Trainer's dict
# prints); `:`, `=` or spaces on the same line separate it from the value
# (`valid loss  6.45` in a `| ... |` table row); numpy/torch reprs of the value
# (`np.float64(0.5)`, `tensor(0.5)`) are unwrapped.
from ..core.layout import RUN_LOG
from ..core.text import one_line

DEFAULT_LOG_REGEX = (
    r"(?<![\w./-]){name}['\"]?(?:\s*[:=]\s*|[ \t]+)(?:np\.float(?:16|32|64)\(|tensor\()?"
    r"([-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|(?i:nan|inf(?:inity)?)))(?![\w.])"
)
NAME_PLACEHOLDER = "{name}"
TAIL_BYTES = 8 << 20  # read at most this much for metrics other than the primary
MAX_BYTES = 64 << 20  # grow toward the start up to this while the primary is missing
FIRST_CHUNK = 64 << 10  # most logs end with the metrics: start small
MAX_CHUNK = 8 << 20  # bounds memory: one chunk of bytes plus its decoded text
_LINE_BREAK = re.compile(rb"[\r\n]")


def build_patterns(user_regex: str, wanted: list[str]) -> tuple[dict[str, re.Pattern], dict[str, str], str]:
    """(one compiled pattern per wanted metric, literals for scan_log, note when the user regex is unusable).

    A user regex with `{name}` applies to every metric; one without applies to
    the primary (wanted[0]) only, the others use DEFAULT_LOG_REGEX. A match of
    the default pattern always contains the metric name, so the name is its
    literal; a user regex gets none (the name may be optional in it).
    """
    note = ""
    user = user_regex or ""
    if user:
        try:
            groups = re.compile(user.replace(NAME_PLACEHOLDER, "x")).groups
        except re.error as exc:
            groups, note = -1, f"log_metric_regex is not a valid regex ({exc}); used the default"
        if groups == 0 or groups > 1:
            note = f"log_metric_regex must have exactly one group, has {groups}; used the default"
        if note:
            user = ""
    patterns, literals = {}, {}
    for i, name in enumerate(wanted):
        template = user if user and (i == 0 or NAME_PLACEHOLDER in user) else DEFAULT_LOG_REGEX
        patterns[name] = re.compile(template.replace(NAME_PLACEHOLDER, re.escape(name)), re.MULTILINE)
        if template is DEFAULT_LOG_REGEX:
            literals[name] = name
    return patterns, literals, note


def _last_value(pattern: re.Pattern, text: str) -> float | None:
    """The value of the last match whose group is a number (a later non-number is skipped)."""
    value = None
    for m in pattern.finditer(text):
        try:
            value = float(m.group(1))
        except (TypeError, ValueError):
            continue
    return value


def scan_log(
    path: Path, patterns: dict[str, re.Pattern], primary: str | None = None, literals: dict[str, str] | None = None
) -> tuple[dict[str, float], int]:
    """Search `path` from its end for each pattern; return (values found, bytes read).

    `literals[name]`, when given, is text every match must contain: chunks
    without it are skipped without running the regex (a cheap C-level scan).
    """
    found: dict[str, float] = {}
    literals = literals or {}
    try:
        fh = open(path, "rb")
    except OSError:
        return found, 0
    with fh:
        end = os.fstat(fh.fileno()).st_size
        read, chunk = 0, FIRST_CHUNK
        while end > 0:
            missing = [n for n in patterns if n not in found]
            budget = MAX_BYTES if primary in missing else TAIL_BYTES
            if not missing or read >= budget:
                break
            start = max(0, end - min(chunk, budget - read))
            fh.seek(start)
            buf = fh.read(end - start)
            read += len(buf)
            if start > 0:
                # The first line is probably cut: leave it to the next (older) chunk,
                # unless the chunk holds no whole line at all (then search it as is).
                m = _LINE_BREAK.search(buf)
                if m and m.end() < len(buf):
                    buf, start = buf[m.end() :], start + m.end()
            end = start
            text = buf.decode("utf-8", errors="replace")
            del buf
            if "\r" in text:  # progress bars: every \r starts a new line for ^ and $
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            for name in missing:
                lit = literals.get(name)
                if lit is not None and lit not in text:
                    continue
                value = _last_value(patterns[name], text)
                if value is not None:
                    found[name] = value
            chunk = min(chunk * 4, MAX_CHUNK)
    return found, read


def read_tail_text(path: Path, limit: int = MAX_BYTES) -> str:
    """The last `limit` bytes of a log as text (for the custom backend), '' if unreadable."""
    return read_tail(path, limit).decode("utf-8", errors="replace")


def extract_log(cfg, run_dir: Path, wanted: list[str]) -> tuple[dict[str, float], str]:
    """(metrics found in run_dir/run.log, note). The note says when the log or the regex is unusable."""
    log = Path(run_dir) / RUN_LOG
    if not log.is_file():
        return {}, f"{log.name} is missing"
    patterns, literals, note = build_patterns(getattr(cfg, "log_metric_regex", "") or "", wanted)
    found, _ = scan_log(log, patterns, primary=wanted[0] if wanted else None, literals=literals)
    if wanted and wanted[0] not in found and wanted[0] in literals:  # the default pattern looked for it
        note = "; ".join(filter(None, (note, unparsed_mention(log, wanted[0]))))
    return found, note


def unparsed_mention(log: Path, name: str) -> str:
    """Why a metric name that IS in the log's tail gave no value ('' when the name is not there).

    The usual cause: two processes (DDP ranks, a logger thread) wrote into one line, as in
    `eval/loss=0.05eval/loss=0.05`; a log with `name` and no number after it is the other.
    """
    needle = name.encode()
    lines = [line for line in _LINE_BREAK.split(read_tail(log, FIRST_CHUNK)) if needle in line]
    if not lines:
        return ""
    last = one_line(lines[-1].strip().decode("utf-8", errors="replace"), 60, "...")
    return (
        f"{name!r} is in run.log but not as `{name}=<number>` on a line of its own (last: {last!r}): "
        "two processes writing one line, or set log_metric_regex"
    )
