"""How train.py runs the host's entry point, so that the sandbox's patches reach the objects training uses.

Loaded by train.py's first FROZEN block (by file path: the experiment folder is not on sys.path),
inside the training process; standard library only. Of the runner it uses only module_split, the
file next to it, loaded the same way (by path) when it is not imported as part of the package.

The entry module is loaded ONCE, as one module object registered under its own name (and, for a
script, also as `__main__`):
  - the first `import <entry>` (the sandbox's, else train.py's own after the sandbox) runs its
    definitions: for a script with an `if __name__ == "__main__":` block, everything above that block;
    for a script that trains at module level, its imports, functions, classes and constant
    assignments up to the first other statement (functions and classes defined further down are
    run with them when nothing they need at definition time comes later);
  - the sandbox patches that module object;
  - then the rest (the main block, or the training statements) runs in that same namespace.
A package module with `main()`, and the `function` pattern, are plain imports followed by `main(...)`.
A sandbox assignment to a name that a host module or one of its classes does not define stops the
run before training, in one line: such a patch would change nothing.
"""

import ast
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types

CONFIG_FILE_SUFFIXES = (".py", ".yaml", ".yml", ".json", ".toml")
SHOWN_NAMES = 12  # names listed when a patch misses


def _load_module_split():
    """module_split.py from this file's folder: by path in the training process, where train.py loaded
    this file by path and the runner's folder is not a package on sys.path."""
    if __package__:
        from . import module_split

        return module_split
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "module_split.py")
    spec = importlib.util.spec_from_file_location("_ar_module_split", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


module_split = _load_module_split()


def fail(message):
    """One line on stderr and exit 1 (SystemExit prints no traceback)."""
    raise SystemExit(f"train.py: {message}")


# ----------------------------------------------------------------------------- arguments


def seeded(overrides):
    """A repeat or confirmation run (ar.py sets AR_SEED_KEY and AR_SEED): the host's seed, set like any override."""
    key, seed = os.environ.get("AR_SEED_KEY"), os.environ.get("AR_SEED")
    if not key or seed is None:
        return overrides
    if isinstance(overrides, dict):
        return {**overrides, key: int(seed)}
    bare = key.lstrip("+~")
    kept = [o for o in overrides if str(o).split("=", 1)[0].lstrip("+~") != bare]
    return [*kept, f"++{bare}={seed}"]


def _current(overrides, key):
    """The value CLI_OVERRIDES gives the output option now (a mapping, or hydra's key=value list)."""
    if isinstance(overrides, dict):
        return overrides.get(key)
    bare = key.lstrip("+~")
    for item in overrides:
        name, _, value = str(item).partition("=")
        if name.lstrip("+~") == bare:
            return value
    return None


def _file_name(value):
    """`ckpt/model.txt` -> model.txt: a value with a file suffix names a file, not a folder."""
    if not isinstance(value, str) or not value.strip() or value.rstrip().endswith(("/", os.sep)):
        return ""
    name = os.path.basename(value.strip())
    suffix = os.path.splitext(name)[1]
    return name if 1 < len(suffix) <= 13 and suffix[1:].replace("_", "").isalnum() else ""


def with_output_dir(overrides):
    """Every run writes into its own folder (ar.py sets AR_OUTPUT_KEY and AR_OUTPUT_DIR): the host's
    output option, set like any override."""
    key, folder = os.environ.get("AR_OUTPUT_KEY"), os.environ.get("AR_OUTPUT_DIR")
    if not key or not folder:
        return overrides
    os.makedirs(folder, exist_ok=True)  # a host may expect its output folder to exist
    name = os.environ.get("AR_OUTPUT_FILE") or _file_name(_current(overrides, key))
    if name:  # the option names a file (`--save model.pt`): that file, inside the run's folder
        folder = os.path.join(folder, name)
    if isinstance(overrides, dict):
        return {**overrides, key: folder}
    bare = key.lstrip("+~")
    kept = [o for o in overrides if str(o).split("=", 1)[0].lstrip("+~") != bare]
    return [*kept, f"++{bare}={folder}"]


def run_overrides(overrides):
    """CLI_OVERRIDES as this run passes them: the repeat's seed and the run's output folder added."""
    return with_output_dir(seeded(overrides))


def argv_of(overrides, style):
    """`--k v` (space) or `--k=v` (equals) arguments; a `"config/x.py": True` key is a positional file."""
    argv = []
    for key, value in overrides.items():
        if value is True and not key.startswith("-") and key.endswith(CONFIG_FILE_SUFFIXES):
            argv.append(key)
            continue
        flag = key if key.startswith("-") else "--" + key
        if value is True and style != "equals":
            argv.append(flag)
        elif value is False or value is None:
            continue
        elif style == "equals":
            argv.append(f"{flag}={value}")
        elif isinstance(value, (list, tuple)):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


def with_constants(tree, overrides, path):
    """The script's ast with module-level `NAME = ...` assignments replaced by the overrides."""
    known = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            known.setdefault(node.targets[0].id, node)
    unknown = [k for k in overrides if k not in known]
    if unknown:
        fail(
            f"CLI_OVERRIDES {', '.join(map(repr, unknown))} names no module-level constant of {path}; "
            f"its constants: {', '.join(n for n in known if module_split.is_constant(known[n].value)) or '(none)'}"
        )
    for name, value in overrides.items():
        node = known[name]
        node.value = ast.copy_location(ast.parse(repr(value), mode="eval").body, node.value)
    return ast.fix_missing_locations(tree)


def check_configurator_keys(tree, overrides, path):
    """A --key=value the configurator would reject (no such global before its exec): one line, not its traceback."""
    known = set()
    for node in tree.body:
        if isinstance(node, ast.Expr) and "configurator" in ast.unparse(node):
            break
        if isinstance(node, ast.Assign):
            known |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    unknown = [
        k for k, v in overrides.items() if k not in known and not (v is True and k.endswith(CONFIG_FILE_SUFFIXES))
    ]
    if known and unknown:
        fail(
            f"CLI_OVERRIDES {', '.join(map(repr, unknown))} names no setting of {path}; "
            f"its settings: {', '.join(sorted(k for k in known if not k.startswith('_')))}"
        )


def has_zero_arg_main(tree):
    """Whether the module defines main() callable without arguments (read with ast, not executed)."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "main":
            args = node.args
            return len(args.args) == len(args.defaults) and not args.posonlyargs
    return False


# ----------------------------------------------------------------------------- patches that miss


def module_name(module):
    return module.__spec__.name if getattr(module, "__spec__", None) else module.__name__


def snapshot_names(module):
    """(module name set, {class: its attribute names} for the classes it defines, {name: value})."""
    values = dict(vars(module))
    names = set(values)
    classes = {}
    for value in list(vars(module).values()):
        if isinstance(value, type) and value.__module__ in (
            module.__name__,
            getattr(module, "__spec__", None) and module.__spec__.name,
        ):
            classes[value] = {n for klass in value.__mro__ for n in vars(klass)}
    return names, classes, values


def missed_patches(module, snapshot):
    """`module.X` or `Class.Y` names set since the snapshot (a module imported since does not count)."""
    names, classes, _ = snapshot
    where = module_name(module)
    missed = []
    for name in set(vars(module)) - names:
        if not isinstance(vars(module)[name], types.ModuleType):
            missed.append((f"{where}.{name}", sorted(n for n in names if not n.startswith("__"))))
    for klass, attrs in classes.items():
        for name in set(vars(klass)) - attrs:
            missed.append((f"{where}.{klass.__name__}.{name}", sorted(n for n in attrs if not n.startswith("__"))))
    return missed


def stale_copies(snapshots):
    """(`model.Block`, `main.Block`) for a class or function the sandbox rebound in the module that
    defines it while another host module still holds the original (imported by name before the patch)."""
    for module, (_, _, values) in snapshots.items():
        for name, old in values.items():
            if vars(module).get(name) is old or not isinstance(old, (type, types.FunctionType)):
                continue
            if getattr(old, "__module__", None) not in (module.__name__, module_name(module)):
                continue  # rebinding a name the module imported itself: not the original's home
            for other in snapshots:
                holder = next((n for n, v in vars(other).items() if v is old), None) if other is not module else None
                if holder:
                    return f"{module_name(module)}.{name}", f"{module_name(other)}.{holder}"
    return None


# ----------------------------------------------------------------------------- the entry


class ScriptLoader:
    """Loads a script's definitions into one module named `__main__`, registered under both names."""

    def __init__(self, entry, path, definitions, flags):
        self.entry, self.path, self.definitions, self.flags = entry, path, definitions, flags

    def create_module(self, spec):
        module = types.ModuleType("__main__")  # the import keeps this name: run as `python script.py` would
        return module

    def exec_module(self, module):
        module.__builtins__ = __builtins__
        sys.modules["__main__"] = module
        code = module_split.compile_part(self.definitions, self.path, self.flags)
        self.entry.loading(module, lambda m: exec(code, m.__dict__))


def whole_lines():
    """One write per printed line on stdout and stderr, so ranks sharing run.log do not splice each other's lines.

    ar.py sets PYTHONUNBUFFERED (a killed run still leaves its last lines), under which print()
    writes the text and its newline in two calls: two torchrun ranks printing the metric at once
    then leave `eval/loss=0.05eval/loss=0.05` and the metric is lost. Line buffering keeps every
    complete line on disk as soon as it is printed, in one write.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True, write_through=False)
        except (AttributeError, ValueError, OSError):  # replaced by the host or a tool: leave it as it is
            pass


class Entry:
    """The host's entry point as train.py runs it; `install` before the sandbox, `run` after it."""

    def __init__(self, pattern, module, style, resume_flag, project_root, get_overrides):
        self.pattern, self.name, self.style = pattern, module, style or "space"
        self.resume_flag, self.project_root = resume_flag, os.path.realpath(project_root)
        self.get_overrides = get_overrides
        self.tree = self.path = self.rest = None
        self.script = False  # loaded by ScriptLoader (else a plain import)
        self.snapshots = {}  # host module -> names right after it loaded
        self.chain = []  # host modules being loaded by the current outermost host import
        self.prepared = False
        self.top_names = set()  # module names the project's files can be imported as
        for folder in (self.project_root, os.path.join(self.project_root, "src")):
            try:
                self.top_names |= {n[:-3] if n.endswith(".py") else n for n in os.listdir(folder)}
            except OSError:
                pass

    # -- import hook: the first import of the entry module (the sandbox's or ours) comes here
    def install(self):
        whole_lines()
        if self.pattern in ("argparse-cli", "hydra", "function") and self.name:
            sys.meta_path.insert(0, self)

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name and fullname.split(".")[0] not in self.top_names:
            return None  # not the project's: torch and co. are never looked up twice
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return None
        if not self.is_host_file(spec.origin):
            return None
        if fullname == self.name:
            self.prepare(spec.origin)
            if self.script:
                loader = ScriptLoader(self, spec.origin, self.definitions, self.flags)
                script = importlib.machinery.ModuleSpec(fullname, loader, origin=spec.origin, is_package=False)
                script.has_location = True  # __file__ set, as for `python script.py`
                return script
        spec.loader = SnapshotLoader(spec.loader, self)
        return spec

    def is_host_file(self, path):
        real = os.path.realpath(path)
        if not real.startswith(self.project_root + os.sep):
            return False
        parts = real[len(self.project_root) :].split(os.sep)
        return ".autoresearch" not in parts and "site-packages" not in parts and "dist-packages" not in parts

    def prepare(self, path):
        """Read the entry's source once: sys.argv, the constants, and how it splits."""
        if self.prepared:
            return
        self.prepared = True
        self.path = path
        with open(path, encoding="utf-8") as fh:
            self.tree = ast.parse(fh.read(), path)
        overrides = run_overrides(self.get_overrides())
        self.overrides = overrides
        if self.pattern == "function":
            return
        if self.pattern == "hydra":
            items = [str(o) for o in overrides]
            ckpt = os.environ.get("AR_RESUME_CKPT")
            if ckpt and self.resume_flag:
                items.append(f"++{self.resume_flag}='{ckpt}'")
            sys.argv = [path, *items]
        elif self.style == "constants":
            sys.argv = [path]
            self.tree = with_constants(self.tree, overrides, path)
        else:
            if self.style == "equals":
                check_configurator_keys(self.tree, overrides, path)
            argv = argv_of(overrides, self.style)
            ckpt = os.environ.get("AR_RESUME_CKPT")
            if ckpt and self.resume_flag:
                argv += [f"--{self.resume_flag}={ckpt}"] if self.style == "equals" else ["--" + self.resume_flag, ckpt]
            sys.argv = [path, *argv]
        # Prefer module.main() for a module that has one: it stays a real module, so
        # `from __future__ import annotations` dataclass parsing resolves its types.
        self.script = self.pattern == "hydra" or self.style == "constants" or not has_zero_arg_main(self.tree)
        if self.script:
            self.definitions, self.rest = module_split.split_module(self.tree)
            self.flags = module_split.future_flags(self.tree)

    def loading(self, module, exec_module):
        """Run a host module's code, then record its names. When the outermost host import ends, every
        module it loaded is recorded again: what the host's own code set meanwhile is not a patch."""
        self.chain.append(module)
        try:
            exec_module(module)
        except BaseException:
            self.chain.remove(module)
            raise
        self.snapshots[module] = snapshot_names(module)
        if self.chain and self.chain[0] is module:
            for loaded in self.chain:
                self.snapshots[loaded] = snapshot_names(loaded)
            self.chain = []

    # -- after the sandbox
    def run(self):
        if self.name not in sys.modules:
            spec = importlib.util.find_spec(self.name)
            if spec is None or not spec.origin:
                fail(f"cannot find module {self.name} from {self.project_root}")
        module = importlib.import_module(self.name)  # a no-op when the sandbox imported it
        if not self.prepared:  # found by another finder (an editable install): as `python -m` would
            self.prepare(module.__file__)
            if self.script and self.pattern != "function":
                import runpy

                return runpy.run_module(self.name, run_name="__main__", alter_sys=True)
        self.check_patches()
        if self.pattern == "function":
            return call_main(module, self.overrides)
        if not self.script:
            return module.main()
        sys.modules["__main__"] = module
        exec(module_split.compile_part(self.rest, self.path, self.flags), module.__dict__)

    def check_patches(self):
        missed = [m for module, snap in self.snapshots.items() for m in missed_patches(module, snap)]
        if missed:
            name, known = missed[0]
            shown = ", ".join(known[:SHOWN_NAMES]) + (", ..." if len(known) > SHOWN_NAMES else "")
            fail(
                f"the sandbox sets {name}, which the host does not define before training starts, so the "
                f"patch would change nothing; patch a name that exists (there: {shown or '(none)'})"
            )
        stale = stale_copies(self.snapshots)
        if stale:
            fail(
                f"the sandbox rebinds {stale[0]}, but {stale[1]} still holds the original (imported by name "
                f"before the patch), so training would not see it; patch its attributes instead "
                f"({stale[0]}.forward = ...) or rebind {stale[1]} too"
            )


class SnapshotLoader:
    """A host module's own loader, then a record of its names (to tell a patch from a new name)."""

    def __init__(self, inner, entry):
        self.inner, self.entry = inner, entry

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.entry.loading(module, self.inner.exec_module)

    def __getattr__(self, name):  # get_source, get_code, ...: as the file loader answers
        return getattr(self.inner, name)


def call_main(module, overrides):
    """The function pattern: main(**overrides); a returned dict of numbers printed as name=value lines."""
    import math

    result = module.main(**overrides)
    if isinstance(result, dict):
        for name, value in result.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                print(f"{name}={float(value) if math.isfinite(value) else value}", flush=True)
    return result
