"""One answer table (arunner.answers): copier.yml, Config, the interview's rules, the defaults and
README's answer list are held to it, so a key added in one place only fails here."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import types

import pytest
import yaml
from conftest import LANDED, MINIMAL_ANSWERS, REPO

sys.path.insert(0, str(REPO / "extensions"))
import answer_rules  # noqa: E402
import defaults  # noqa: E402

from arunner.core.answers import (
    ALWAYS,
    ANSWERS,
    BOOL,
    CONFIG_KEYS,
    DERIVED,
    DETECTED,
    IF_ASKED,
    INT,
    LITERAL,
    NEVER,
    NO_VALUE,
    STR,
    YAML,
)
from arunner.core.config import Config  # noqa: E402
from arunner.core.errors import UserError  # noqa: E402

HELP_WIDTH = 100  # one terminal line, with Copier's prompt around it
NOT_ANSWERS = {"expr_dir", "project_root", "constraints", "template_version"}  # Config fields of another origin


def questions() -> dict:
    """copier.yml's questions; `ar_*` are hidden machinery (preflight, --pretend), never answers."""
    data = yaml.safe_load((REPO / "copier.yml").read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def storage(question: dict) -> str:
    when = question.get("when", True)
    return ALWAYS if when is True else NEVER if when is False else IF_ASKED


def test_every_copier_question_is_in_the_table_and_agrees_with_it():
    asked = questions()
    machinery = {k for k in asked if k.startswith("ar_")}
    assert all(asked[k].get("when") is False for k in machinery), "an ar_* question must be hidden machinery"
    only_copier, only_table = sorted(set(asked) - machinery - set(ANSWERS)), sorted(set(ANSWERS) - set(asked))
    assert not (only_copier or only_table), f"only in copier.yml: {only_copier}; only in answers.py: {only_table}"
    for name, a in ANSWERS.items():
        q = asked[name]
        assert q["type"] == a.type, (name, "type")
        assert storage(q) == a.stored, (name, "when (stored by copier update?)")
        if "<<" in q["help"]:  # a help that says how the editor finishes, when the editor is on
            assert f"else '{a.help}'" in q["help"], (name, "help")
        else:
            assert q["help"] == a.help, (name, "help")
        choices = q.get("choices", ())
        assert set(choices.values() if isinstance(choices, dict) else choices) == set(a.choices), (name, "choices")
        default = str(q.get("default", ""))
        if a.source == DETECTED:
            assert re.search(rf"\bar_detected\(.*\)\.{name}(_for\(\w+\))?(?!\w)", default), (name, default)
        elif a.source == LITERAL:
            raw = q.get("default", "")
            parsed = yaml.safe_load(default) if a.type == YAML else int(default) if a.type == INT else raw
            assert parsed == a.default, (name, default)
        else:
            assert a.source == DERIVED and "<<" in default and "ar_detected" not in default, (name, default)
        validator = q.get("validator", "")
        if a.rule:
            assert re.match(rf"\s*<< ar_check\('{name}', {name}, _copier_conf", validator), (name, validator)
        else:
            assert not validator, (name, "validator without a rule in the table")


def test_every_answer_that_shapes_the_experiment_survives_update():
    """A `when: false` answer is recomputed on every update, in scratch copies without the host:
    experiment.json would change behind the person's back or end up with conflict markers."""
    lost = [name for name, a in ANSWERS.items() if a.in_config and a.stored == NEVER]
    assert not lost, f"answers re-derived on every copier update: {lost}"


def test_the_table_is_complete_and_its_rules_exist():
    for name, a in ANSWERS.items():
        assert a.type in (STR, YAML, INT, BOOL) and a.source in (DETECTED, LITERAL, DERIVED), name
        assert a.stored in (ALWAYS, IF_ASKED, NEVER), name
        assert "\n" not in a.help and len(a.help) <= HELP_WIDTH, (name, len(a.help))
        assert (a.rule == "choice") == bool(a.choices), name
        assert not a.rule or a.rule in answer_rules.RULES_BY_NAME, (name, a.rule)
        if a.in_config and not a.required:  # experiments rendered before it existed lack it
            assert a.absent is not NO_VALUE, (name, "needs `absent`, the value Config uses when it is missing")
        if a.stored == IF_ASKED:
            assert a.absent is not NO_VALUE, (name, "needs `absent`, experiment.json's value when not asked")
    used = {a.rule for a in ANSWERS.values()}
    assert set(answer_rules.RULES_BY_NAME) <= used, "a rule no answer uses"
    # A key experiment.json must hold has been rendered since the last landed release.
    landed = _landed_config_keys(LANDED[0])
    newer = [n for n, a in ANSWERS.items() if a.required and n not in landed]
    assert not newer, f"{newer} did not exist at {LANDED[0]}: not required, with an `absent` value"


def _landed_config_keys(commit: str) -> tuple[str, ...]:
    """experiment.json's answer keys at a landed commit: CONFIG_KEYS of that commit's own answer
    table (the runner renders experiment.json from it; the module imports only the standard library)."""
    for path in ("arunner/core/answers.py", "arunner/answers.py"):  # the runner's layout moved
        shown = subprocess.run(
            ["git", "show", f"{commit}:template/<<slug>>/{path}"], cwd=REPO, capture_output=True, text=True
        )
        if shown.returncode == 0:
            break
    else:
        pytest.fail(f"commit {commit} is not in this clone's history, or has no answer table")
    module = types.ModuleType(f"landed_answers_{commit}")
    sys.modules[module.__name__] = module  # dataclasses looks its module up there
    try:
        exec(compile(shown.stdout, f"{commit}:{path}", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module.CONFIG_KEYS


def test_config_has_one_field_per_config_answer_in_table_order():
    fields = [f.name for f in dataclasses.fields(Config) if f.name not in NOT_ANSWERS]
    assert fields == list(CONFIG_KEYS)


def test_the_interview_takes_types_and_fallbacks_from_the_table():
    assert set(answer_rules.YAML_KEYS) == {n for n, a in ANSWERS.items() if a.type == YAML}
    assert answer_rules.parse_value("seconds", "90") == 90
    assert set(answer_rules.RULES) == {n for n, a in ANSWERS.items() if a.rule}
    assert "must be one of min, max" in answer_rules.check("primary_direction", "up")
    found = defaults.Detected(None)  # no host to read: every detected answer is its fallback
    for name, a in ANSWERS.items():
        if a.source == DETECTED:
            value = getattr(found, name)
            assert (yaml.safe_load(value) if a.type == YAML and isinstance(value, str) else value) == a.default, name


def test_readme_lists_every_answer():
    readme = (REPO / "README.md").read_text()
    section = readme.split("### The interview (answer keys)", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in ANSWERS if f"`{name}`" not in section]
    assert not missing, f"README's answer list lacks {missing}"


def test_rendered_experiment_json_is_the_table(minimal_expr):
    data = json.loads((minimal_expr.dir / "experiment.json").read_text())
    assert list(data) == [*CONFIG_KEYS, "template_version"]
    assert data["cli_style"] == "space" and data["cli_args"] == {"lr": 0.1} and data["seconds"] == 30
    assert data["entry_main_module"] == MINIMAL_ANSWERS["entry_main_module"]
    assert data["parent_expr"] == "" and data["protected_globs"] == []  # not asked / default: the table's values


def write_config(tmp_path, data: dict):
    expr = tmp_path / ".autoresearch" / "261125-x"
    expr.mkdir(parents=True)
    (expr / "experiment.json").write_text(json.dumps(data))
    return expr


def full_config() -> dict:
    values = {n: (a.absent if a.absent is not NO_VALUE else a.default) for n, a in ANSWERS.items() if a.in_config}
    return {**values, "slug": "261125-x", "primary_direction": "min", "template_version": "v1"}


def test_config_from_an_older_experiment_falls_back_to_the_table(tmp_path):
    data = full_config()
    added_later = [n for n, a in ANSWERS.items() if a.in_config and not a.required]
    for name in added_later:
        data.pop(name)
    cfg = Config.load(write_config(tmp_path, data))
    assert all(getattr(cfg, n) == ANSWERS[n].absent for n in added_later)
    assert cfg.cli_style == "space" and cfg.protected_globs == [] and cfg.seed_key == ""


def test_config_missing_an_original_answer_is_one_line(tmp_path):
    data = full_config()
    data.pop("primary_metric")
    with pytest.raises(UserError, match=r"lacks \['primary_metric'\]; re-render it with `copier update"):
        Config.load(write_config(tmp_path, data))
