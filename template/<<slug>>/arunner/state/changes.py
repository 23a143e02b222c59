"""What each run changed against the best it was compared with, recorded once when the run is recorded.

  runs/rNNNN/change.json  against (the best's run id, or "baseline"), overrides {key: [old, new]},
                          patched / removed names of the sandbox, delta of the primary (and in noise
                          sigmas: the run's margin), the code key, a one-line summary
  runs/rNNNN/train.diff   unified diff from the best's train.py to this run's
  .ar-changes.tsv         one line per recorded run (what `history`, `report --html` and the
                          duplicate check read: one file, not 10,000)

The code key is a hash of train.py's syntax tree with RUN_NOTE blanked: two files with the same
key run the same program (comments, blank lines and the note aside). Standard library only.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

from ..core import digests, pysource
from ..core.errors import UserError
from ..core.fsutil import atomic_write_bytes, atomic_write_json, read_tail
from ..core.layout import BASELINE, CHANGE_FILE, CHANGES_INDEX, DECISION, DIFF_FILE, TRAIN_PY
from ..core.runs import run_dir_of
from ..core.text import one_line
from .snapshots import read_run_note, restore_target

INDEX_COLUMNS = (
    "run_id",
    "against",
    "code_key",
    "rerun_of",
    "status",
    "verdict",
    "delta",
    "margin",
    "touched",  # what the change touched: override keys and patched names, comma-separated (report groups by it)
    "summary",
    "note",
)
INDEX_HEADER = "\t".join(INDEX_COLUMNS) + "\n"
NOTE_NAME = "RUN_NOTE"
OVERRIDES_NAME = "CLI_OVERRIDES"
VALUE_CAP = 24  # characters of one override value in a summary
SUMMARY_CAP = 200  # characters of a summary in the index
DIFF_CONTEXT = 3  # lines of context in train.diff
INDEX_TAIL_BYTES = 8192  # an index line is under 600 bytes: the last few lines fit
MEASURED = ("ok", "invalid")  # a run that measured (or refused) the program decided it; a crash or timeout may
# come from the machine or the host (out of memory, a data path fixed since): said, never refused


# ----------------------------------------------------------------------------- the code itself


def _parse(source: bytes | str):
    """The shared tree of source (never changed here), or None when it does not parse."""
    try:
        return pysource.parse(source)
    except (SyntaxError, ValueError):
        return None


def _is_named(node, name: str) -> bool:
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return any(isinstance(t, ast.Name) and t.id == name for t in targets)


_keys: dict[bytes, str] = {}  # code keys of this process's sources (asked at a run's launch and its record) ...
KEYS_KEPT = 32  # ... at most this many


def code_key(source: bytes) -> str:
    """Same key, same program: the syntax tree with RUN_NOTE's value blanked (comments never reach it)."""
    key = _keys.get(source)
    if key is None:
        key = _code_key(source)
        if len(_keys) >= KEYS_KEPT:
            del _keys[next(iter(_keys))]
        _keys[source] = key
    return key


def _code_key(source: bytes) -> str:
    tree = _parse(source)
    if tree is None:  # does not parse: only byte-identical files are the same
        return "raw:" + digests.sha1(source).hexdigest()[:16]
    body = [_blank_note(node) if _is_note(node) else node for node in tree.body]
    # The shared tree stays as it is: a module of the same statements, RUN_NOTE's replaced by blanked copies.
    return digests.sha1(ast.dump(ast.Module(body=body, type_ignores=tree.type_ignores)).encode()).hexdigest()[:16]


def _is_note(node) -> bool:
    return isinstance(node, (ast.Assign, ast.AnnAssign)) and _is_named(node, NOTE_NAME)


def _blank_note(node):
    """A copy of a RUN_NOTE statement with its value blanked (its fields: all the dump reads)."""
    blank = type(node)(**{name: getattr(node, name) for name in node._fields if hasattr(node, name)})
    blank.value = ast.Constant("")
    return blank


def _overrides(tree) -> dict:
    """CLI_OVERRIDES as a dict (a Hydra list of `key=value` strings becomes one); {} when not a literal."""
    found = {}
    for node in tree.body if tree else []:
        if isinstance(node, ast.Assign) and _is_named(node, OVERRIDES_NAME):
            try:
                found = ast.literal_eval(node.value)
            except ValueError:
                found = {}
    if isinstance(found, (list, tuple)):
        pairs = (str(item).split("=", 1) for item in found)
        return {p[0]: (p[1] if len(p) > 1 else True) for p in pairs}
    return found if isinstance(found, dict) else {}


def _jsonable(value):
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def override_changes(old: dict, new: dict) -> dict:
    """{key: [old, new]} for every key whose value differs (None stands for absent)."""
    keys = list(old) + [k for k in new if k not in old]
    return {str(k): [_jsonable(old.get(k)), _jsonable(new.get(k))] for k in keys if old.get(k) != new.get(k)}


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _module_aliases(tree) -> set[str]:
    """Names bound by imports: `m` in `import pkg.model as m` (dropped from `m.Block.forward`)."""
    names = set()
    for node in tree.body if tree else []:  # the sandbox imports at the top level
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _names(node, aliases: set[str]) -> list[str]:
    """What a top-level statement binds or patches: defs, assignment targets, setattr(obj, "x", ...)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return []  # what an import brings in shows where it is used
    found = []
    for sub in ast.walk(node):
        targets = []
        if isinstance(sub, ast.Assign):
            targets = sub.targets
        elif isinstance(sub, (ast.AugAssign, ast.AnnAssign)):
            targets = [sub.target]
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and sub is not node:
            found.append(sub.name)
        elif isinstance(sub, ast.Call) and getattr(sub.func, "id", "") == "setattr" and len(sub.args) >= 2:
            obj, attr = _dotted(sub.args[0]), sub.args[1]
            if obj and isinstance(attr, ast.Constant) and isinstance(attr.value, str):
                found.append(f"{obj}.{attr.value}")
        for target in targets:
            for t in target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]:
                name = _dotted(t.value if isinstance(t, ast.Subscript) else t)
                if name:
                    found.append(name)
    out = []
    for name in found or ([] if isinstance(node, (ast.Import, ast.ImportFrom)) else [f"line {node.lineno}"]):
        head, _, rest = name.partition(".")
        name = rest if rest and head in aliases else name
        if name not in out:
            out.append(name)
    return out


def _statements(tree, source: str) -> list[tuple[str, object]]:
    """(its source text, node) per top-level statement, RUN_NOTE and CLI_OVERRIDES aside."""
    lines = source.splitlines()
    out = []
    for node in tree.body if tree else []:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and (
            _is_named(node, NOTE_NAME) or _is_named(node, OVERRIDES_NAME)
        ):
            continue
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        out.append(("\n".join(line.rstrip() for line in lines[first - 1 : node.end_lineno]), node))
    return out


def _unmatched(mine: list, theirs: list, key) -> list:
    """Items of `mine` whose key is not in `theirs` (as a multiset: a statement written twice counts twice)."""
    pool = {}
    for item in theirs:
        pool[key(item)] = pool.get(key(item), 0) + 1
    out = []
    for item in mine:
        k = key(item)
        if pool.get(k):
            pool[k] -= 1
        else:
            out.append(item)
    return out


def patched_names(new_tree, old_tree, new_source: str = "", old_source: str = "") -> tuple[list[str], list[str]]:
    """(names of statements added or changed, names only in statements taken out), RUN_NOTE and CLI_OVERRIDES aside.

    Statements are matched by their text first (cheap: most of train.py is the same), and the
    rest by syntax tree, so a comment edited inside a function is not a change.
    """
    old, new = _statements(old_tree, old_source), _statements(new_tree, new_source)
    added, removed = _unmatched(new, old, lambda s: s[0]), _unmatched(old, new, lambda s: s[0])
    added, removed = (
        _unmatched(added, removed, lambda s: ast.dump(s[1])),
        _unmatched(removed, added, lambda s: ast.dump(s[1])),
    )
    new_aliases, old_aliases = _module_aliases(new_tree), _module_aliases(old_tree)
    patched = list(dict.fromkeys(n for _, node in added for n in _names(node, new_aliases)))
    gone = [n for n in dict.fromkeys(n for _, node in removed for n in _names(node, old_aliases)) if n not in patched]
    return patched, gone


# ----------------------------------------------------------------------------- one change


def _short(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return one_line(value, VALUE_CAP, "...")


def summary_of(overrides: dict, patched: list[str], removed: list[str], parses: bool = True) -> str:
    """`lr 0.0003→0.001; patched Block.forward; removed my_hook`, or `no code change`."""
    parts = []
    if overrides:
        parts.append(", ".join(f"{k} {_short(o)}→{_short(n)}" for k, (o, n) in overrides.items()))
    if patched:
        parts.append("patched " + ", ".join(patched))
    if removed:
        parts.append("removed " + ", ".join(removed))
    if not parses:
        parts.append("train.py does not parse")
    return one_line("; ".join(parts) or "no code change", SUMMARY_CAP, "...")


def describe(new_source: bytes, old_source: bytes | None) -> dict:
    """The change from `old_source` to `new_source` as data (overrides, patched, removed, summary)."""
    new_tree = _parse(new_source)
    old_tree = _parse(old_source) if old_source is not None else None
    overrides = override_changes(_overrides(old_tree), _overrides(new_tree)) if old_source is not None else {}
    patched, removed = [], []
    if old_source is not None and new_tree:
        texts = new_source.decode("utf-8", errors="replace"), old_source.decode("utf-8", errors="replace")
        patched, removed = patched_names(new_tree, old_tree, *texts)
    return {
        "overrides": overrides,
        "patched": patched,
        "removed": removed,
        "code_key": code_key(new_source),
        "summary": summary_of(overrides, patched, removed, new_tree is not None)
        if old_source is not None
        else "first run",
    }


def unified_diff(new_source: bytes, old_source: bytes, old_name: str, new_name: str) -> str:
    if new_source == old_source:
        return ""  # what difflib returns for equal texts, without importing it
    old = old_source.decode("utf-8", errors="replace").splitlines(keepends=True)
    new = new_source.decode("utf-8", errors="replace").splitlines(keepends=True)
    import difflib  # only a run that changed train.py pays for it

    lines = difflib.unified_diff(old, new, old_name, new_name, n=DIFF_CONTEXT)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _value(result: dict | None):
    value = ((result or {}).get("primary") or {}).get("value")
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _against_value(expr: Path, against: str, best: dict | None):
    """The primary the run was compared with: the best record's (a mean once re-measured), else its decision."""
    if best and best.get("run_id") == against:
        return _value(best)
    try:
        return _value(json.loads((run_dir_of(expr, against) / DECISION).read_text()))
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- recording (persist time)


def record(expr: Path, run_dir: Path, result: dict, best: dict | None, unjudged: bool = False) -> dict:
    """Write change.json and train.diff of a run about to be recorded, and its index line.

    `result.previous_best_run_id` names the best the run was judged against (`best` may be a later
    one in a wave). `unjudged`: repair records a run killed before its judgement, against `best`.
    Idempotent: repair may call it again for the same run. A missing snapshot is said in the summary.
    """
    expr = Path(expr)
    source = (run_dir / TRAIN_PY).read_bytes() if (run_dir / TRAIN_PY).exists() else b""
    against = result.get("previous_best_run_id") or ((best or {}).get("run_id") if unjudged else "") or ""
    rerun_of = result.get("confirms") or ""
    old_source, missing = None, ""
    if rerun_of:
        change = {"overrides": {}, "patched": [], "removed": [], "code_key": code_key(source)}
        change["summary"] = f"re-run of {rerun_of}"
    else:
        try:
            old_source = restore_target(expr, {"snapshot": f"runs/{against}/train.py"} if against else None)
        except UserError:
            old_source, missing = None, f"snapshot of {against} missing"
        if not against:
            baseline = expr / BASELINE
            old_source = baseline.read_bytes() if baseline.exists() else None
        change = describe(source, old_source)
        if missing:
            change["summary"] = missing
    value, base = _value(result), _against_value(expr, against, best) if against else None
    delta = None if value is None or base is None else value - base
    data = {
        "run_id": result["run_id"],
        "against": against or "baseline",
        "rerun_of": rerun_of or None,
        **change,
        "delta": delta,
        "margin": result.get("margin"),  # improvement in noise sigmas (positive = better), null without a spread
        "status": result.get("status"),
        "verdict": result.get("verdict"),
        "note": read_run_note(source.decode("utf-8", errors="replace")),
    }
    if old_source is not None:
        name = f"runs/{against}/train.py" if against else BASELINE
        atomic_write_bytes(
            run_dir / DIFF_FILE, unified_diff(source, old_source, name, f"runs/{result['run_id']}/train.py").encode()
        )
    atomic_write_json(run_dir / CHANGE_FILE, data)
    _append_index(expr, data)
    return data


def _cell(value, cap: int = SUMMARY_CAP) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return one_line(value, cap)


def touched(change: dict) -> str:
    """`lr,patched Block.forward`: the key a report groups reverted ideas by."""
    parts = list(change.get("overrides") or {}) + [f"patched {n}" for n in change.get("patched") or []]
    parts += [f"removed {n}" for n in change.get("removed") or []]
    return ",".join(parts) or ("re-run" if change.get("rerun_of") else "no code change")


def _append_index(expr: Path, data: dict) -> None:
    path = expr / CHANGES_INDEX
    if path.exists():
        tail = read_tail(path, INDEX_TAIL_BYTES).decode("utf-8", errors="replace")
        if any(line.split("\t", 1)[0] == data["run_id"] for line in tail.splitlines()):
            return
    cells = [
        data["run_id"],
        "" if data["against"] == "baseline" else data["against"],
        data["code_key"],
        data["rerun_of"] or "",
        data["status"] or "",
        data["verdict"] or "",
        _cell(data["delta"]),
        _cell(data["margin"]),
        _cell(touched(data)),
        _cell(data["summary"]),
        _cell(data["note"], 120),
    ]
    line = ("" if path.exists() else INDEX_HEADER) + "\t".join(c.replace("\t", " ") for c in cells) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read_index(expr: Path) -> dict[str, list[str]]:
    """The index by run id, each line as its cells in INDEX_COLUMNS order (the last line of a run
    wins); {} when there is none yet. A line of another width (cut by a kill) is skipped."""
    try:
        text = (Path(expr) / CHANGES_INDEX).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    width = len(INDEX_COLUMNS)
    return {cells[0]: cells for cells in (line.split("\t") for line in text.split("\n")[1:]) if len(cells) == width}


def _lines_holding(data: bytes, *needles: bytes) -> list[tuple[int, bytes]]:
    """(offset, line) of each line but the first (the header) that holds a needle; a needle that
    starts with a newline finds the lines that start with the rest of it."""
    out = []
    for needle in needles:
        pos = data.find(needle)
        while pos >= 0:
            start = data.rfind(b"\n", 0, pos + 1) + 1
            end = data.find(b"\n", max(start, pos))
            end = len(data) if end < 0 else end
            out += [(start, data[start:end])] if start else []
            pos = data.find(needle, end)
    return out


def _ids(lines: list[tuple[int, bytes]]) -> set[bytes]:
    return {line.partition(b"\t")[0] for _, line in lines}


def _index_rows(data: bytes, ids: set[bytes]) -> dict[str, list[str]]:
    """read_index of these runs only (each by its last whole line, in file order); UnicodeError
    where one of their lines is not UTF-8 (the caller reads the whole index as read_index does)."""
    width = len(INDEX_COLUMNS)
    found = sorted(_lines_holding(data, *(b"\n" + run_id + b"\t" for run_id in ids)))
    rows = (line.decode("utf-8").split("\t") for _, line in found)
    return {cells[0]: cells for cells in rows if len(cells) == width}


def _same_key_rows(expr: Path, key: str, current: str) -> tuple[dict, dict]:
    """(read_index of the best's run and of the runs whose line holds `key`, {run id: the verdict of
    its last confirmation}): all same_code reads, found in the index's bytes (decoding and splitting
    every line of 10,000 cost ~20 ms a run)."""
    try:
        data = (Path(expr) / CHANGES_INDEX).read_bytes()
    except FileNotFoundError:
        return {}, {}
    at = INDEX_COLUMNS.index
    try:
        cells = _index_rows(data, {current.encode(), *_ids(_lines_holding(data, key.encode()))})
        same = [c[0] for c in cells.values() if c[at("code_key")] == key and not c[at("rerun_of")]]
        confirming = _lines_holding(data, *(f"\t{run_id}\t".encode() for run_id in same))  # an inner column
        reruns = _index_rows(data, _ids(confirming))
    except UnicodeError:  # a line that is not UTF-8 (never the runner's): the whole index, as read_index reads it
        cells = reruns = read_index(expr)
    return cells, {c[at("rerun_of")]: c[at("verdict")] for c in reruns.values() if c[at("rerun_of")]}


def index_row(cells: list[str]) -> dict:
    return dict(zip(INDEX_COLUMNS, cells))


# ----------------------------------------------------------------------------- no paying twice


def same_code(expr: Path, source: bytes, best: dict | None) -> tuple[str, str]:
    """(refusal, remark) for a candidate about to launch.

    refusal: the same program (code key) was already measured against this same best: one line naming
    that run and its verdict. remark: it was tried against an older best, or it crashed (allowed; said in
    the note). The best's own program is neither: the noise rule speaks about a re-run of the best.
    """
    key = code_key(source)
    current = (best or {}).get("run_id") or ""
    cells, final = _same_key_rows(expr, key, current)  # confirmations decide
    if current in cells and cells[current][INDEX_COLUMNS.index("code_key")] == key:
        return "", ""  # the best's own program: the noise rule says what a re-run of it measures
    at = INDEX_COLUMNS.index
    same = [index_row(c) for c in cells.values() if c[at("code_key")] == key and not c[at("rerun_of")]]
    for row in reversed(same):
        if row["against"] == current and row["status"] in MEASURED:
            verdict = final.get(row["run_id"], row["verdict"])
            against = f"best {current}" if current else "the baseline"
            return (
                f"train.py is the same program as {row['run_id']} (RUN_NOTE and comments aside), already run against "
                f"{against}: {verdict}; change something, or add --force to pay for it again",
                "",
            )
    if same:
        row = same[-1]
        verdict = final.get(row["run_id"], row["verdict"])
        if row["against"] == current:  # it crashed or timed out against this best: run, but said
            return "", f"same program as {row['run_id']} ({verdict} against this best)"
        older = f"older best {row['against']}" if row["against"] else "the baseline"
        return "", f"same program as {row['run_id']} ({verdict} against {older})"
    return "", ""


def check_same_code(expr: Path, source: bytes, best: dict | None, force: bool) -> str:
    """Before a launch: refuse (UserError) the same program decided against this best unless `force`;
    returns the remark for the run's note (tried against an older best, or run again by --force)."""
    refusal, remark = same_code(expr, source, best)
    if refusal and not force:
        raise UserError(refusal)
    if refusal:
        return "run again with --force: " + refusal.split(" (", 1)[0].replace("train.py is the ", "")
    return remark
