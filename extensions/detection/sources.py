"""The host project as detection reads it: bounded reads, parsed modules, pyproject.toml.

Every read goes through `Project`, so the caps hold everywhere: at most
MAX_PARSED Python files parsed, none bigger than MAX_FILE_BYTES, and
MAX_TOTAL_BYTES read in all. Python is read with `ast` only: host code is
never imported or executed.
"""

from __future__ import annotations

import ast
import keyword
from pathlib import Path

from pyliteral import as_number

from arunner.core.fsutil import module_file

from .walk import Tree

MAX_PARSED = 200
MAX_FILE_BYTES = 512 * 1024
MAX_TOTAL_BYTES = 16 * 1024 * 1024


def scalar(text: str):
    """A command-line word as the value it stands for: int, float, bool, None or the string."""
    low = text.lower()
    number = as_number(text)
    if number is not None:
        return number
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    return text


class Project:
    def __init__(self, root: Path, tree: Tree):
        self.root = Path(root)
        self.tree = tree
        self.bytes_read = 0
        self.parsed: dict[str, ast.Module | None] = {}
        self.pyproject = self._pyproject()

    # ------------------------------------------------------------ reading
    def read(self, rel: str, limit: int = MAX_FILE_BYTES) -> str | None:
        """The text of a file under the root, or None when missing, too big or over budget."""
        path = self.root / rel
        try:
            size = path.stat().st_size
            if size > limit or self.bytes_read + size > MAX_TOTAL_BYTES:
                return None
            self.bytes_read += size
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def parse(self, rel: str) -> ast.Module | None:
        """The ast of a project Python file (cached); None when unreadable, invalid or over budget."""
        if rel in self.parsed:
            return self.parsed[rel]
        tree = None
        if len(self.parsed) < MAX_PARSED:
            text = self.read(rel)
            try:
                tree = ast.parse(text) if text is not None else None
            except (SyntaxError, ValueError):
                tree = None
            self.parsed[rel] = tree
        return tree

    def _pyproject(self) -> dict:
        text = self.read("pyproject.toml")
        if not text:
            return {}
        try:
            import tomllib  # Python 3.11+
        except ImportError:
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ImportError:
                return {}
        try:
            return tomllib.loads(text)
        except Exception:  # noqa: BLE001 - a broken pyproject only costs us its hints
            return {}

    # ------------------------------------------------------------ modules
    def module_file(self, dotted: str) -> str | None:
        """The file (relative path) of a dotted module of this project, as the interview resolves it."""
        path = module_file(self.root, dotted) if dotted else None
        return path.relative_to(self.root).as_posix() if path is not None else None

    @staticmethod
    def dotted(rel: str) -> str | None:
        """The dotted module of a relative .py path (src/ layout stripped); None when not importable."""
        parts = rel[:-3].split("/") if rel.endswith(".py") else rel.split("/")
        if parts and parts[0] == "src" and len(parts) > 1:
            parts = parts[1:]
        if parts and parts[-1] == "__init__":
            parts = parts[:-1]
        if not parts or not all(p.isidentifier() and not keyword.iskeyword(p) for p in parts):
            return None
        return ".".join(parts)

    def imports(self, tree: ast.Module, dotted: str) -> list[str]:
        """Project modules a module imports (absolute dotted names that resolve to files here)."""
        package = dotted.rsplit(".", 1)[0] if "." in dotted else ""
        found: list[str] = []
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: max(0, len(package.split(".")) - (node.level - 1))] if package else []
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import mod` imports a submodule when pkg/mod.py exists
                names = [f"{base}.{a.name}" if base else a.name for a in node.names] + [base]
            for name in names:
                if name and name != dotted and name not in found and self.module_file(name):
                    found.append(name)
        # keep only the most specific: `pkg.mod` makes a bare `pkg` redundant
        return [n for n in found if not any(o.startswith(n + ".") for o in found)]

    def scripts(self) -> list[tuple[str, str]]:
        """[project.scripts] targets as (module, function)."""
        table = (self.pyproject.get("project") or {}).get("scripts") or {}
        out = []
        for target in table.values() if isinstance(table, dict) else []:
            module, _, func = str(target).partition(":")
            out.append((module.strip(), func.strip()))
        return out

    @property
    def name(self) -> str:
        return str((self.pyproject.get("project") or {}).get("name") or self.root.name)
