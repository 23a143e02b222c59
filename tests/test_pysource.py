"""core/pysource: one parse per distinct text, shared by every check of a run, never a stale tree."""

from __future__ import annotations

import ast

import pytest

from arunner.core import pysource


def test_same_text_one_tree_bytes_and_text_alike_an_edit_parsed_again(tmp_path):
    text = "import os\nRUN_NOTE = 'é'  # → plain UTF-8\nx = 1\n"
    tree = pysource.parse(text)
    assert pysource.parse(text) is tree and pysource.parse(text.encode()) is tree  # train.py is read as both
    path = tmp_path / "prepare.py"
    path.write_text(text, encoding="utf-8")
    assert pysource.parse_file(path) is tree
    path.write_text(text.replace("x = 1", "x = 2"), encoding="utf-8")  # same size, any stat: the text decides
    edited = pysource.parse_file(path)
    assert edited is not tree and ast.literal_eval(edited.body[-1].value) == 2


def test_bytes_the_parser_decodes_its_own_way_keep_their_meaning():
    latin = "# -*- coding: latin-1 -*-\nx = 'é'\n".encode("latin-1")
    assert ast.literal_eval(pysource.parse(latin).body[0].value) == "é"
    bom = b"\xef\xbb\xbfx = 1\n"
    assert ast.dump(pysource.parse(bom)) == ast.dump(ast.parse(bom))
    with pytest.raises(SyntaxError):
        pysource.parse(b"x = '\xff'\n")  # not UTF-8: the parser's own error, as ast.parse gives it


def test_a_source_that_does_not_parse_raises_every_time_and_is_not_kept():
    for _ in range(2):
        with pytest.raises(SyntaxError):
            pysource.parse("def (:\n")
    assert "def (:\n" not in pysource._trees


def test_the_cache_is_bounded(monkeypatch):
    for i in range(pysource.TREES_KEPT + 5):
        pysource.parse(f"x = {i}\n")
    assert len(pysource._trees) <= pysource.TREES_KEPT and "x = 0\n" not in pysource._trees
    monkeypatch.setattr(pysource, "TEXT_KEPT_CHARS", 1000)
    big = "y = 1\n" * 100  # 600 characters: a second one pushes the first out
    pysource.parse(big)
    pysource.parse(big.replace("1", "2"))
    assert big not in pysource._trees and pysource._kept_chars <= 1000
    assert sum(map(len, pysource._trees)) == pysource._kept_chars
    huge = "z = 1\n" * 200  # over the bound alone: parsed, not kept, nothing else dropped for it
    kept = dict(pysource._trees)
    assert isinstance(pysource.parse(huge), ast.Module) and pysource._trees == kept


SAMPLE = """import prepare, wandb
from unittest import mock
RUN_NOTE = "x"
CLI_OVERRIDES = {"lr": 0.1}
vars(prepare)["evaluate"] = 1
setattr(prepare, "evaluate", lambda c: 0)
mock.patch("prepare.evaluate", 1)
wandb.run.summary["eval/loss"] = 0.0
print(f"eval/loss={1}")
def f(): val_split()
x: int = 3
"""


def test_every_reader_of_a_shared_tree_leaves_it_as_it_was():
    from arunner.integrity import data_guard, protect
    from arunner.loop import plans
    from arunner.state import changes

    tree = pysource.parse(SAMPLE)
    before = ast.dump(tree, include_attributes=True)
    assert protect.guard_train_py(SAMPLE, "eval/loss", ["prepare.evaluate"]).line == 5
    assert data_guard.guard_data_reads(SAMPLE, ["val_split"], []).line == 10
    changes.describe(SAMPLE.encode(), SAMPLE.replace("0.1", "0.2").encode())
    changes.code_key(SAMPLE.encode())
    assert plans.overrides_of(SAMPLE.encode()) == {"lr": 0.1}
    assert pysource.parse(SAMPLE) is tree and ast.dump(tree, include_attributes=True) == before
