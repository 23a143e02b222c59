"""Python source read with `ast`, parsed once per process for each distinct text.

One run reads the same files several times (train.py by the guards, the duplicate
check and the change record; prepare.py and the modules it imports by each integrity
check). Each distinct text is parsed once and its tree shared. The cache key is the
text itself, compared in full: an edited file is parsed again, whatever its stat says.

The trees are shared, so no caller may change one: code that edits a tree parses its
own copy with ast.parse. A source that does not parse is not kept: every call raises
the parser's own error again.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Union

# Trees kept (the oldest goes first): the sources of one run (train.py, prepare.py and up to 64 modules
# it imports) fit, and a long process stays bounded. A tree takes ~35 bytes per byte of its source.
TREES_KEPT = 128
TEXT_KEPT_CHARS = 1_000_000  # ... and at most this much source text in all (~35 MB of trees)

_trees: dict[Union[str, bytes], ast.Module] = {}
_kept_chars = 0


def parse(source: Union[str, bytes]) -> ast.Module:
    """ast.parse(source), shared: raises SyntaxError or ValueError as ast.parse does."""
    if isinstance(source, bytes):
        text = _plain_text(source)
        source = source if text is None else text
    tree = _trees.get(source)
    if tree is None:
        tree = ast.parse(source)
        _keep(source, tree)
    return tree


def _keep(source: Union[str, bytes], tree: ast.Module) -> None:
    """Keep the tree, the oldest ones going beyond the bounds (a source over the text bound: not kept)."""
    global _kept_chars
    if len(source) > TEXT_KEPT_CHARS:
        return
    while len(_trees) >= TREES_KEPT or _kept_chars + len(source) > TEXT_KEPT_CHARS:
        oldest = next(iter(_trees))
        _kept_chars -= len(oldest)
        del _trees[oldest]
    _trees[source] = tree
    _kept_chars += len(source)


def _plain_text(source: bytes) -> Union[str, None]:
    """The text of bytes the parser would read as plain UTF-8 (valid, no BOM, no coding line), else None.

    The same program given as bytes or as its text then shares one tree (train.py is read as
    both); anything the parser decodes its own way (a BOM, a coding declaration, invalid
    UTF-8) keeps the bytes as its key and is parsed from them."""
    if source.startswith(b"\xef\xbb\xbf") or any(b"coding" in line for line in source.splitlines()[:2]):
        return None
    try:
        return source.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_file(path: Union[str, Path], errors: str = "strict") -> ast.Module:
    """The tree of a file read as UTF-8 (`errors` as for str.decode); raises OSError, ValueError
    (a decoding error included) or SyntaxError."""
    return parse(Path(path).read_text(encoding="utf-8", errors=errors))
