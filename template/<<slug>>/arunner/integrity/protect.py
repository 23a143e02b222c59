"""What the agent must not change, and a static guard on train.py.

The manifest (.ar-protected.json in the experiment folder) lists prepare.py,
the project modules that prepare.py imports (the evaluation code), this
experiment's own runner files and any user globs (data splits, configs), each
with its stat and a content digest. A check stats every entry and hashes only
those whose stat moved, so a clean check costs one stat per file. The stat
includes st_ctime, which no user process can set back: an edit that restores
the mtime with os.utime is still seen. Large files get a sampled digest (the
size plus chunks spread over the file): a new size or mtime is a change, and
when only the ctime moved (a restore with `cp -p`) the sampled digest decides.

The guard reads train.py with `ast` (it is never run) and refuses code that
prints or logs the primary metric itself, or rebinds a protected name.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

from ..core import chain_hash, digests, pysource
from ..core.errors import UserError
from ..core.fsutil import atomic_write_text, read_json
from ..core.layout import MANIFEST, PREPARE_PY, RUNNER_DIR, RUNNER_FILES
from .data_guard import Offence, evaluation_modules, imported_functions, parent_packages

FULL_HASH_MAX_BYTES = 16 * 1024 * 1024  # files up to this size are hashed whole
SAMPLE_CHUNK_BYTES = 64 * 1024  # a sampled digest reads this much per chunk ...
SAMPLE_CHUNKS = 16  # ... at this many offsets spread over the file (first and last included)
EVAL_NAME_RE = re.compile(r"(eval|valid|metric|score|loss|accuracy|test|bleu|perplex)", re.I)  # protected functions


# ---------------------------------------------------------------- manifest


class Check:
    def __init__(self):
        self.changed: list[str] = []  # paths relative to the project root, missing files included
        self.hashed: list[str] = []  # entries whose stat moved, so their content was read


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def digest(path: Path, size: int) -> str:
    """sha256 of the whole file, or for large files of its size plus SAMPLE_CHUNKS chunks."""
    h = digests.sha256(size=size if size <= FULL_HASH_MAX_BYTES else SAMPLE_CHUNK_BYTES * SAMPLE_CHUNKS)
    with open(path, "rb") as fh:
        if size <= FULL_HASH_MAX_BYTES:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
            return "sha256:" + h.hexdigest()
        h.update(str(size).encode())
        span = size - SAMPLE_CHUNK_BYTES
        for i in range(SAMPLE_CHUNKS):
            fh.seek(span * i // (SAMPLE_CHUNKS - 1))
            h.update(fh.read(SAMPLE_CHUNK_BYTES))
    return "sampled:" + h.hexdigest()


def default_paths(expr_dir: Path, project_root: Path, protected_globs: Iterable[str] = ()) -> list[Path]:
    """prepare.py and what it imports from the project, the runner files, and the user's globs."""
    expr_dir, root = Path(expr_dir), Path(project_root)
    paths = [expr_dir / name for name in RUNNER_FILES if (expr_dir / name).is_file()]
    paths += sorted(p for p in (expr_dir / RUNNER_DIR).rglob("*.py") if "__pycache__" not in p.parts)
    modules = evaluation_modules(root, expr_dir / PREPARE_PY)
    paths += modules + parent_packages(root, modules)
    for pattern in protected_globs:
        if os.path.isabs(pattern) or ".." in Path(pattern).parts:
            raise UserError(f"protected glob {pattern!r} must be relative to the project root and stay inside it")
        import glob  # only a manifest built from patterns pays for it

        paths += sorted(Path(p) for p in glob.glob(str(root / pattern), recursive=True) if os.path.isfile(p))
    unique: dict[Path, None] = {}
    for p in paths:
        unique.setdefault(Path(os.path.abspath(p)), None)
    return list(unique)


def _bytecode_matches(source: str, cache: str) -> bool:
    """Whether the .pyc holds exactly the code compiled from the source (its 16-byte header aside)."""
    import marshal

    try:
        with open(source, "rb") as fh:
            text = fh.read()
        with open(cache, "rb") as fh:
            data = fh.read()
        # Compared as code objects, not bytes: marshal's output depends on the writing process
        # (reference flags), and code equality leaves out the file name (a project copied
        # elsewhere keeps its old caches, which Python trusts by mtime and size).
        return marshal.loads(data[16:]) == compile(text, source, "exec", dont_inherit=True)
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, AttributeError):
        return False


def check_bytecode(manifest: dict, project_root: Path) -> tuple[list[str], bool]:
    """(protected sources whose __pycache__ file is not their compiled source, manifest refreshed?).

    A .pyc with the source's size and mtime in its header is loaded instead of the source
    by every later import: a new or changed one is compiled and compared (once; its stat is
    then kept), so an honest cache written by Python costs one compile, a forged one blocks.
    One listing per __pycache__ folder, one stat per cache that exists."""
    seen = manifest.setdefault("bytecode", {})
    root, bad, refreshed = os.fspath(project_root), [], False
    tag = sys.implementation.cache_tag
    listed: dict[str, set] = {}
    for rel in manifest["files"]:
        if not rel.endswith(".py") or tag is None:
            continue
        folder, _, name = rel.rpartition("/")
        cache_dir = os.path.join(root, folder, "__pycache__")
        if cache_dir not in listed:
            try:
                listed[cache_dir] = set(os.listdir(cache_dir))
            except OSError:
                listed[cache_dir] = set()
        cache_name = f"{name[:-3]}.{tag}.pyc"
        if cache_name not in listed[cache_dir]:
            continue
        cache = os.path.join(cache_dir, cache_name)
        try:
            key = _stat_key(os.stat(cache))
        except OSError:
            continue
        if seen.get(rel) == key:
            continue
        if _bytecode_matches(os.path.join(root, rel), cache):
            seen[rel], refreshed = key, True
        else:
            bad.append(_rel(Path(cache), Path(project_root)))
    return bad, refreshed


# ---------------------------------------------------------------- the evaluator's import path

IMPORT_HOOKS = ("sitecustomize.py", "usercustomize.py")  # plus every *.pth: code Python runs at start-up


def evaluator_path(python: str = sys.executable) -> list[str]:
    """sys.path of `python -I` (the evaluator's interpreter before the project root is appended)."""
    import json
    import subprocess

    try:
        out = subprocess.run(
            [python, "-I", "-c", "import json, sys; print(json.dumps(sys.path))"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        return [p for p in json.loads(out) if p and os.path.isdir(p)]
    except (OSError, ValueError, subprocess.SubprocessError):
        return []


def _hooks_in(dirs: Iterable[str]) -> dict:
    """{path: digest} of every start-up hook (.pth, sitecustomize, usercustomize) in these folders."""
    found = {}
    for folder in dirs:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if name.endswith(".pth") or name in IMPORT_HOOKS:
                path = os.path.join(folder, name)
                try:
                    found[path] = digest(Path(path), os.stat(path).st_size)
                except OSError:
                    continue
    return found


def record_import_path(python: str = sys.executable) -> dict:
    dirs = evaluator_path(python)
    return {"python": python, "dirs": dirs, "hooks": _hooks_in(dirs)}


def check_import_path(manifest: dict) -> list[str]:
    """Start-up hooks added, changed or removed in the evaluator's import path since the manifest was recorded."""
    recorded = manifest.get("import_path")
    if not recorded:
        return []
    now, before = _hooks_in(recorded["dirs"]), recorded["hooks"]
    return sorted(p for p in set(now) | set(before) if now.get(p) != before.get(p))


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise UserError(f"protected file {path} is outside the project root {root}") from None


def record(expr_dir: Path, project_root: Path, paths: Iterable[Path], rules: Optional[dict] = None) -> dict:
    """Hash and stat every path and the evaluator's start-up hooks, write the manifest (sealed); returns it."""
    root = Path(project_root)
    files = {}
    for path in paths:
        st = os.stat(path)
        files[_rel(path, root)] = {"stat": _stat_key(st), "digest": digest(Path(path), st.st_size)}
    manifest = {"version": 1, "files": files, "import_path": record_import_path()}
    if rules is not None:
        manifest["rules"] = rules
    _write(expr_dir, manifest)
    return manifest


def _write(expr_dir: Path, manifest: dict) -> None:
    import json

    text = json.dumps(manifest, indent=1) + "\n"
    chain_hash.seal_text(expr_dir, "manifest", text)  # sealed first: an edited manifest is seen
    atomic_write_text(Path(expr_dir) / MANIFEST, text)


def set_rules(expr_dir: Path, rules: dict) -> None:
    """Record the rules in force (after a person changed them with `ar.py session`)."""
    manifest = load(expr_dir)
    if manifest is not None:
        manifest["rules"] = rules
        _write(expr_dir, manifest)


def load(expr_dir: Path) -> Optional[dict]:
    """The manifest, or None before the first run."""
    path = Path(expr_dir) / MANIFEST
    fix = "a person must look at what changed it"
    chain_hash.verify_file(expr_dir, "manifest", path)  # the runner's own, or the run is blocked
    data = read_json(path, "protected-file manifest", fix, default=None)
    if data is not None and not (isinstance(data, dict) and isinstance(data.get("files"), dict)):
        raise UserError(f"protected-file manifest {path} is damaged; {fix}")
    return data


def check(expr_dir: Path, project_root: Path, manifest: Optional[dict] = None) -> Check:
    """Stat every protected file; hash only those whose stat moved. Empty `changed`: all intact.

    A file whose stat moved but whose content is the same (a `git checkout`, a
    `touch`) gets its new stat written back, so the next check is cheap again.
    `manifest`: what load() returned just now, in this same step (else it is loaded here).
    """
    manifest = load(expr_dir) if manifest is None else manifest
    result = Check()
    if manifest is None:
        return result
    root = os.fspath(project_root)
    refreshed = False
    for rel, entry in manifest["files"].items():
        path = os.path.join(root, rel)  # plain strings: a Path per file would cost more than its stat
        try:
            st = os.stat(path)
        except OSError:
            result.changed.append(rel)
            continue
        old = entry["stat"]
        if st.st_ctime_ns == old[2] and st.st_mtime_ns == old[1] and st.st_size == old[0] and st.st_ino == old[3]:
            continue  # the common case, kept to attribute reads: it runs once per protected file
        key = _stat_key(st)
        sampled = entry["digest"].startswith("sampled:")
        if sampled and key[:2] != old[:2]:  # large data: a new size or mtime is a change
            result.changed.append(rel)
            continue
        result.hashed.append(rel)
        try:
            same = digest(Path(path), st.st_size) == entry["digest"]
        except OSError:
            same = False
        if same:
            entry["stat"], refreshed = key, True
        else:
            result.changed.append(rel)
    result.changed += check_import_path(manifest)
    forged, cached = check_bytecode(manifest, project_root)
    result.changed += forged
    refreshed = refreshed or cached
    if refreshed and not result.changed:
        _write(expr_dir, manifest)
    return result


def ensure(
    expr_dir: Path,
    project_root: Path,
    protected_globs: Iterable[str] = (),
    rules: Optional[dict] = None,
    manifest: Optional[dict] = None,
) -> Check:
    """Record the manifest at the first run, else check it (the call before and after every run).
    `manifest`: what load() returned just now, in this same step (else it is loaded here)."""
    manifest = load(expr_dir) if manifest is None else manifest
    if manifest is None:
        record(expr_dir, project_root, default_paths(expr_dir, project_root, protected_globs), rules)
        return Check()
    return check(expr_dir, project_root, manifest)


def accept(
    expr_dir: Path, project_root: Path, protected_globs: Iterable[str] = (), rules: Optional[dict] = None
) -> list[str]:
    """Record the files as they are now (`ar.py protect --accept`); returns the paths whose change it accepted.

    Works on a damaged or edited manifest too (it is what a person runs to recover)."""
    try:
        changed = check(expr_dir, project_root).changed if load(expr_dir) is not None else []
    except UserError:
        changed = [MANIFEST]
    if rules is None:
        try:
            rules = (load(expr_dir) or {}).get("rules")
        except UserError:
            rules = None
    record(expr_dir, project_root, default_paths(expr_dir, project_root, protected_globs), rules)
    return changed


def changed_message(changed: list[str], expr_dir: Path) -> str:
    """One line: which protected files changed and what to do (stop and report; a person decides)."""
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return (
        f"protected files changed: {shown}; stop and report this to the person "
        "(only they restore the files or accept the change)"
    )


# ---------------------------------------------------------------- static guard on train.py


OUTPUT_CALLS = {"print", "write", "writelines", "pprint"}  # plain output, by the called name
LOG_CALLS = {"debug", "info", "warning", "warn", "error", "critical", "exception", "log"}  # logging / trackers
TRACKER_CALLS = {"add_scalar", "add_scalars", "log_metric", "log_metrics", "log_dict", "add_hparams", "summary"}
PATCH_CALLS = {"setattr", "patch", "setitem"}  # setattr(mod, "name", f), mock.patch("a.name", f)


def _called_name(func: ast.AST) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _strings(node: ast.AST) -> Iterable[str]:
    """Every literal string (and bytes) inside node, f-string pieces included."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, (str, bytes)):
            value = sub.value
            yield value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _names_metric(text: str, metric: str) -> bool:
    """The literal is the metric's name, or holds it as `name=` / `name:` (what the log backend reads)."""
    if text.strip() == metric:
        return True
    return re.search(rf"(?<![\w/.]){re.escape(metric)}\s*[=:]", text) is not None


def guard_train_py(source: str, primary_metric: str, protected: Iterable[str]) -> Optional[Offence]:
    """The offence on the earliest line of train.py's source, or None.

    `protected` holds names the candidate must not rebind: bare (`evaluate_model`,
    matched as any attribute, setattr or patch target) or qualified
    (`prepare.evaluate`, matched only on an object named like the owner).
    """
    try:
        tree = pysource.parse(source)  # shared with the data guard: read, never changed
    except SyntaxError:  # the run itself crashes with the full traceback: not the guard's call
        return None
    bare, qualified = set(), {}
    for name in protected:
        owner, _, attr = name.rpartition(".")
        if owner:
            qualified.setdefault(attr, set()).add(owner.rpartition(".")[2])
        else:
            bare.add(name)
    found = list(_offences(tree, primary_metric, bare, qualified))
    if not found:
        return None
    node, reason = min(found, key=lambda f: (f[0].lineno, f[0].col_offset))
    lines = source.splitlines()
    return Offence(node.lineno, lines[node.lineno - 1].strip() if node.lineno <= len(lines) else "", reason)


def _rebound(target: ast.AST, bare: set, qualified: dict) -> Optional[str]:
    """The protected name that assigning to (or deleting) target rebinds, if any."""
    if isinstance(target, ast.Attribute):
        chain = _dotted(target).split(".")
        if target.attr in bare:
            return target.attr
        if len(chain) >= 2 and chain[-2] in qualified.get(target.attr, ()):
            return target.attr
        inner = next((part for part in chain[:-1] if part in bare), None)  # evaluate_model.__code__ = ...
        return inner or (_rebound(target.value, bare, qualified) if isinstance(target.value, ast.Attribute) else None)
    if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant):
        key, base = target.slice.value, ast.unparse(target.value)  # vars(mod)["name"], mod.__dict__["name"]
        if key in bare or any(owner in base for owner in qualified.get(key, ())):
            return key
    if isinstance(target, (ast.Tuple, ast.List)):
        return next((n for n in (_rebound(e, bare, qualified) for e in target.elts) if n), None)
    return None


def _offences(tree: ast.AST, metric: str, bare: set, qualified: dict):
    """(node, reason) for every offence in the tree."""
    for node in ast.walk(tree):
        targets: list = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            name = _rebound(target, bare, qualified)
            if name:
                yield node, f"rebinds the protected name {name}"
            elif (  # wandb.run.summary["val_loss"] = 0.0
                isinstance(target, ast.Subscript)
                and "summary" in _dotted(target.value)
                and any(_names_metric(t, metric) for t in _strings(target.slice))
            ):
                yield node, f"logs the primary metric {metric} itself"
        if not isinstance(node, ast.Call):
            continue
        called, dotted = _called_name(node.func), _dotted(node.func)
        if called in PATCH_CALLS or dotted.endswith("patch.object"):
            owner_text = ast.unparse(node.args[0]) if node.args else ""  # setattr(prepare, "evaluate", f)
            for text in (t for arg in node.args[:2] for t in _strings(arg)):
                leaf = text.rpartition(".")[2]
                if leaf in bare or any(o in text or o in owner_text for o in qualified.get(leaf, ())):
                    yield node, f"rebinds the protected name {leaf}"
        if called in OUTPUT_CALLS or called in LOG_CALLS or called in TRACKER_CALLS:
            args = [*node.args, *(k.value for k in node.keywords)]
            if any(_names_metric(t, metric) for arg in args for t in _strings(arg)):
                logs = called in TRACKER_CALLS or called in LOG_CALLS
                yield node, f"{'logs' if logs else 'prints'} the primary metric {metric} itself"


def protected_names(prepare_path: Path, project_root: Path) -> list[str]:
    """The names a candidate must not rebind: prepare's evaluate, plus the evaluation and metric
    functions prepare.py imports from the project (names that look like evaluation; classes,
    which the agent may legitimately patch, are left out)."""
    names = ["prepare.evaluate"]
    try:
        tree = pysource.parse_file(prepare_path)
    except (OSError, SyntaxError, ValueError):
        return names
    root = Path(project_root)
    for imported, functions in imported_functions(root, tree):
        names += [n for n in imported if n in functions and EVAL_NAME_RE.search(n) and n not in names]
    return names
