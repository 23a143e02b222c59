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

TREES_KEPT = 32  # distinct texts whose trees are kept (the oldest goes first): a long loop stays bounded

_trees: dict[Union[str, bytes], ast.Module] = {}


def parse(source: Union[str, bytes]) -> ast.Module:
    """ast.parse(source), shared: raises SyntaxError or ValueError as ast.parse does."""
    if isinstance(source, bytes):
        text = _plain_text(source)
        source = source if text is None else text
    tree = _trees.get(source)
    if tree is None:
        tree = ast.parse(source)
        if len(_trees) >= TREES_KEPT:
            del _trees[next(iter(_trees))]
        _trees[source] = tree
    return tree


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
