"""Sandbox patches reach the objects the host trains with, whatever the entry shape.

Hosts: tests/hosts/guard_host (argparse under `if __name__ == "__main__":`, an activation class)
and tests/hosts/modlevel_host (lowercase constants, then data, classes and the loop at module
level). Pure Python, a run takes well under a second.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import RUNNER_SRC, answers

GUARD = answers(entry_main_module="chargen", cli_args="{steps: 200}", primary_metric="val_loss", slug="261203-guard")
MODLEVEL = answers(
    entry_main_module="gpt",
    cli_style="constants",
    cli_args="{max_iters: 200}",
    primary_metric="val loss",
    slug="261203-modlevel",
)
RAISING = "\nimport {mod} as host\n\n\ndef _raises(self, x):\n    raise RuntimeError('patched activation ran')\n\n\nhost.{cls}.forward = _raises\n"


def sandbox(expr, code: str) -> None:
    expr.edit('RUN_NOTE = "baseline"', 'RUN_NOTE = "patch"')
    expr.edit("# ---- FROZEN: resume and invocation", code + "\n# ---- FROZEN: resume and invocation")


@pytest.mark.parametrize(
    ("host", "data", "module", "cls"),
    [("guard_host", GUARD, "chargen", "NewGELU"), ("modlevel_host", MODLEVEL, "gpt", "FeedForward")],
    ids=["main-guard", "module-level-constants"],
)
def test_a_patch_that_raises_inside_a_host_class_crashes_the_run(rendered_once, tmp_path, host, data, module, cls):
    expr = rendered_once(host, data, tmp_path / host)
    base = expr.run()
    assert base["status"] == "ok" and isinstance(base["primary"]["value"], float), base["note"]
    sandbox(expr, RAISING.format(mod=module, cls=cls))
    patched = expr.run()
    assert patched["status"] == "crash"
    assert "RuntimeError: patched activation ran" in patched["note"]  # proof the patch ran in training
    log = (expr.dir / "runs" / patched["run_id"] / "run.log").read_text()
    assert log.count("Traceback") == 1 and "val" not in log.split("Traceback")[0]  # it crashed before any metric


def test_a_patch_to_a_name_the_host_lacks_fails_before_training_in_one_line(rendered_once, tmp_path):
    expr = rendered_once("guard_host", GUARD, tmp_path / "guard")
    expr.run()
    sandbox(expr, "\nimport chargen\n\nchargen.NewGELU.foward = lambda self, x: x  # misspelt\n")
    result = expr.run()
    assert result["status"] == "crash"
    log = (expr.dir / "runs" / result["run_id"] / "run.log").read_text().strip()
    assert len(log.splitlines()) == 1 and "chargen.NewGELU.foward" in log and "forward" in log, log
    assert "step" not in log


def test_constants_still_replace_and_the_sandbox_sees_them(rendered_once, tmp_path):
    expr = rendered_once("modlevel_host", MODLEVEL, tmp_path / "modlevel")
    sandbox(expr, "\nimport gpt\n\nprint('sandbox saw max_iters', gpt.max_iters, gpt.__name__, flush=True)\n")
    result = expr.run()
    assert result["status"] == "ok", result["note"]
    log = (expr.dir / "runs" / result["run_id"] / "run.log").read_text()
    assert "sandbox saw max_iters 200 __main__" in log and "step 200: val loss" in log
    assert log.count("val loss") == 1  # the script trained once, not again on import


def test_a_sandbox_only_edit_with_the_best_value_bit_for_bit_asks_whether_the_patch_ran(rendered_once, tmp_path):
    expr = rendered_once("guard_host", GUARD, tmp_path / "guard")
    best = expr.run()
    sandbox(expr, "\nimport chargen\n\nchargen.NewGELU.forward = chargen.NewGELU.forward  # no effect\n")
    same = expr.run()
    assert same["primary"]["value"] == best["primary"]["value"]
    assert f"equals {best['run_id']}'s to the last digit: did the patch run?" in same["note"]
    sandbox(expr, "\nimport chargen\n\nchargen.NewGELU.forward = lambda self, x: max(x, 0.0)\n")
    changed = expr.run()  # a patch that took effect: a new value, no question
    assert changed["primary"]["value"] != best["primary"]["value"] and "did the patch run" not in changed["note"]


def test_a_module_level_script_splits_into_definitions_and_training():
    import ast

    from conftest import HOSTS

    from arunner import module_split

    source = (HOSTS / "modlevel_host" / "gpt.py").read_text()
    source += "\nclass Late:\n    size = len(data)\n"  # reads a training-time name while being defined: stays put
    head, rest = module_split.split_module(ast.parse(source))
    defined = [n.name for n in head if isinstance(n, ast.ClassDef)]
    assert defined == ["FeedForward", "Model"]  # defined further down, needing nothing from the training part
    assert ast.unparse(rest[0]) == "random.seed(seed)" and any(getattr(n, "name", "") == "Late" for n in rest)
    assert {t.id for n in head if isinstance(n, ast.Assign) for t in n.targets} == {
        "n_hidden",
        "learning_rate",
        "max_iters",
        "seed",
    }


# The torch hosts of tests/test_hosts.py, one patched run each (it crashes at the patched call).
TORCH_SHAPES = [
    ("argparse_host", "argparse-cli", "hfargs_lm.train", "{}", "hfargs_lm.train.BigramLM.forward"),  # package main()
    ("hydra_host", "hydra", "hydra_app.train", "[]", "hydra_app.train.build_optimizer"),
    ("function_host", "function", "fn_host.train", "{use_wandb: false}", "fn_host.train.evaluate"),
]


@pytest.mark.parametrize(
    ("host", "pattern", "module", "args", "target"), TORCH_SHAPES, ids=[t[1] for t in TORCH_SHAPES]
)
def test_a_patch_reaches_the_torch_hosts_entry_shapes(rendered_once, tmp_path, host, pattern, module, args, target):
    data = answers(
        entry_pattern=pattern, entry_main_module=module, cli_args=args, slug=f"261203-{host.replace('_', '-')}"
    )
    expr = rendered_once(host, data, tmp_path / host)
    owner, attr = target.rsplit(".", 1)
    code = f"\nimport {module}\n\n\ndef _raises(*a, **k):\n    raise RuntimeError('patched {attr} ran')\n\n\n{owner}.{attr} = _raises\n"
    sandbox(expr, code)
    result = expr.run()
    assert result["status"] == "crash" and f"RuntimeError: patched {attr} ran" in result["note"], result["note"]


HOOKED = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("_h", {hostentry!r})
hostentry = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hostentry)
sys.path.insert(0, {root!r})
entry = hostentry.Entry("argparse-cli", "main", "space", "", {root!r}, lambda: {{}})
entry.install()
{sandbox}
entry.run()
"""


def hooked_run(tmp_path, sandbox_code: str) -> subprocess.CompletedProcess:
    """main.py run as train.py runs it, with `sandbox_code` in between; main.py's own import sets conf.ready."""
    root = tmp_path / "proj"
    root.mkdir(exist_ok=True)
    (root / "conf.py").write_text("ready = False\n\n\nclass Conf:\n    lr = 0.1\n")
    (root / "main.py").write_text(
        "import conf\nfrom conf import Conf\n\nconf.late = 1  # the host's own doing, not a patch\n\n"
        "if __name__ == '__main__':\n    print('lr', Conf.lr, conf.late)\n"
    )
    script = HOOKED.format(hostentry=str(RUNNER_SRC / "arunner" / "hostentry.py"), root=str(root), sandbox=sandbox_code)
    return subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True)


def test_what_the_hosts_own_imports_set_is_not_taken_for_a_patch(tmp_path):
    ok = hooked_run(tmp_path, "import main, conf\nconf.Conf.lr = 0.5")
    assert ok.returncode == 0 and ok.stdout.strip() == "lr 0.5 1", ok.stderr
    missed = hooked_run(tmp_path, "import main, conf\nconf.Conf.learning_rate = 0.5")
    assert missed.returncode == 1 and missed.stdout == ""
    assert missed.stderr.strip().startswith("train.py: the sandbox sets conf.Conf.learning_rate"), missed.stderr


def test_rebinding_a_class_another_module_imported_by_name_is_one_line(tmp_path):
    stale = hooked_run(tmp_path, "import main, conf\nconf.Conf = type('Conf', (), {'lr': 0.5})")
    assert stale.returncode == 1 and stale.stdout == ""
    assert "rebinds conf.Conf, but main.Conf still holds the original" in stale.stderr, stale.stderr
    both = hooked_run(tmp_path, "import main, conf\nconf.Conf = main.Conf = type('Conf', (), {'lr': 0.5})")
    assert both.returncode == 0 and both.stdout.strip() == "lr 0.5 1", both.stderr
