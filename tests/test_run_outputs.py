"""What a run's outputs and its end look like to the agent: a baseline that never ends names its knob.

Host: tests/hosts/forever_host (`--max_steps -1` trains forever; pure Python).
"""

from __future__ import annotations

from conftest import answers

FOREVER = answers(
    entry_main_module="loop",
    cli_args="{max_steps: -1}",
    primary_metric="val_loss",
    length_key="max_steps",
    slug="261203-forever",
)


def test_a_baseline_that_times_out_names_the_length_knob(rendered_once, tmp_path):
    expr = rendered_once("forever_host", FOREVER, tmp_path / "forever")
    assert '"length_key": "max_steps"' in (expr.dir / "experiment.json").read_text()
    proc = expr.ar("run", "--seconds", "2")
    head, second = proc.stdout.splitlines()[:2]
    assert " timeout/" in head
    assert "timeout: the baseline did not end within 2s" in second
    assert "set 'max_steps' in CLI_OVERRIDES of .autoresearch/261203-forever/train.py" in second
    assert "(the baseline has -1)" in second and "traceback" not in second
