"""results.tsv's seal: a kill between seal and append still verifies, an edit never does, an append
hashes only the last block of rows, and a ledger the runner itself appended to is not hashed again."""

from __future__ import annotations

import time

import pytest

from arunner.core import chain_hash, digests, ledger_seal
from arunner.core.errors import UserError
from arunner.state import ledger

ROW = {"run_id": "r0001", "started_at": "t", "wall_seconds": 1.0, "status": "ok", "verdict": "advance"}
ROW.update(primary={"name": "val_loss", "value": 0.5}, valid=True, improved_over_best=True, note="")


def forget_this_process():
    """What a new `ar.py run` knows of the ledger: only what is on disk."""
    ledger_seal._known_stats.clear()
    ledger_seal._appended.clear()


def assert_refused(tmp_path, tsv):
    """The check refuses the ledger with the one line naming it."""
    with pytest.raises(UserError, match="results.tsv differs from what the runner recorded"):
        ledger_seal.verify_ledger(tmp_path, tsv)


def one_row_ledger(tmp_path):
    """results.tsv in tmp_path (the experiment folder) with the runner's header and one sealed row."""
    tsv = tmp_path / "results.tsv"
    ledger.ensure(tsv)
    ledger.append(tsv, ROW)
    return tsv


def test_ledger_chain_survives_a_kill_between_seal_and_append_and_catches_edits(tmp_path):
    tsv = one_row_ledger(tmp_path)
    ledger_seal.before_append(tmp_path, tsv, b"r0002\tkilled before this row was written\n")  # sealed, not appended
    ledger_seal.verify_ledger(tmp_path, tsv)  # the runner killed in between: still its own state
    ledger.append(tsv, {**ROW, "run_id": "r0002", "verdict": "revert"})
    ledger_seal.verify_ledger(tmp_path, tsv)
    tsv.write_text(tsv.read_text().replace("\tadvance\t", "\trevert\t"))
    assert_refused(tmp_path, tsv)


def test_a_ledger_checked_again_in_one_run_is_hashed_once_and_an_edit_between_is_still_caught(tmp_path, monkeypatch):
    tsv = one_row_ledger(tmp_path)
    time.sleep(0.05)  # past the clock tick of the append, as for a ledger last written by an earlier run
    ledger_seal.verify_ledger(tmp_path, tsv)  # before training
    macs = []
    monkeypatch.setattr(digests, "hmac_sha256", lambda key, data, batch=0: macs.append(data) or "x")
    ledger_seal.verify_ledger(tmp_path, tsv)  # after it: the same rows, the same seal
    assert macs == []
    monkeypatch.undo()
    tsv.write_text(tsv.read_text().replace("\tadvance\t", "\trevert\t"))  # same size, in the same run
    assert_refused(tmp_path, tsv)


def test_a_ledger_as_the_runner_appended_it_is_not_hashed_again_and_any_later_write_is(tmp_path, monkeypatch):
    """After its append (and once the clock tick is over) the runner records the ledger's stat: the next
    check with that stat hashes nothing; an edit of the same size moves ctime and is hashed, and caught."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    tsv = one_row_ledger(tmp_path)
    time.sleep(0.05)  # past the clock tick of the append
    ledger_seal.record_appended(tmp_path, tsv)
    forget_this_process()  # as in the next `ar.py run`
    hashed = []
    real = digests.hmac_sha256
    monkeypatch.setattr(
        digests, "hmac_sha256", lambda key, data, batch=0: hashed.append(data) or real(key, data, batch)
    )
    ledger_seal.verify_ledger(tmp_path, tsv)
    assert not [d for d in hashed if d.startswith(b"results.tsv")]  # the rows were not hashed
    ledger_seal._trust_file(tmp_path).write_text("{")  # a damaged record: ignored, the rows are hashed
    ledger_seal.verify_ledger(tmp_path, tsv)
    assert [d for d in hashed if d.startswith(b"results.tsv")]
    hashed.clear()
    tsv.write_text(tsv.read_text().replace("\tadvance\t", "\trevert\t"))  # same size
    assert_refused(tmp_path, tsv)
    assert [d for d in hashed if d.startswith(b"results.tsv")]


def test_a_ledger_sealed_by_the_earlier_chain_still_verifies_and_is_resealed(tmp_path):
    tsv = tmp_path / "results.tsv"
    ledger.ensure(tsv)
    lines = tsv.read_bytes().split(b"\n")[:-1]
    seals = chain_hash.load_seals(tmp_path)
    seals["results"] = {
        "rows": len(lines),
        "head": ledger_seal._chain(lines, chain_hash.sealing_key())[-1],
        "prev": None,
    }
    chain_hash.save_seals(tmp_path, seals)  # as the runner sealed it before one HMAC over the file
    ledger_seal.verify_ledger(tmp_path, tsv)
    ledger.append(tsv, ROW)
    assert chain_hash.load_seals(tmp_path)["results"]["v"] == ledger_seal.LEDGER_SEAL_VERSION
    ledger_seal.verify_ledger(tmp_path, tsv)
    tsv.write_text(tsv.read_text().replace("0.5", "0.4"))
    assert_refused(tmp_path, tsv)


def rows_ledger(tmp_path, n):
    tsv = one_row_ledger(tmp_path)
    for i in range(2, n + 1):
        ledger.append(tsv, {**ROW, "run_id": f"r{i:04d}"})
    return tsv


# block sizes in bytes (the header is 79, a row 47): every row closes a block, so the killed row does;
# blocks of 3-4 rows, the ledger ending inside one or at its end; no block at all
@pytest.mark.parametrize("size", [1, 130, 150, 10**6])
def test_blocks_survive_a_kill_at_a_block_boundary_and_catch_an_edit_in_any_block(tmp_path, monkeypatch, size):
    monkeypatch.setattr(ledger_seal, "BLOCK_BYTES", size)
    tsv = rows_ledger(tmp_path, 6)
    forget_this_process()
    ledger_seal.before_append(tmp_path, tsv, b"r9999\tkilled before this row was written\n")
    killed = chain_hash.load_seals(tmp_path)["results"]
    assert (killed["tail_at"] == len(tsv.read_bytes()) + 41) == (size == 1)  # the killed row closed a block
    forget_this_process()
    ledger_seal.verify_ledger(tmp_path, tsv)  # one row short of the seal: the runner was killed in between
    ledger.append(tsv, {**ROW, "run_id": "r9998"})  # the next run's row, sealed from the checked rows
    forget_this_process()
    ledger_seal.verify_ledger(tmp_path, tsv)
    blocks = chain_hash.load_seals(tmp_path)["results"]["blocks"]
    assert len(blocks) == {1: 8, 10**6: 0}.get(size, len(blocks)) and (size == 10**6 or len(blocks) >= 2)
    original = tsv.read_text()
    lines = original.splitlines(keepends=True)
    for edited in (
        original.replace("r0002\t", "r0003\t", 1),  # in the first rows
        original.replace("r9998\t", "r9997\t"),  # in the last row
        "".join(lines[:2] + [lines[3], lines[2]] + lines[4:]),  # two rows swapped
    ):
        tsv.write_text(edited)
        forget_this_process()
        assert_refused(tmp_path, tsv)


def test_an_append_to_a_long_trusted_ledger_hashes_only_its_last_block(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(ledger_seal, "BLOCK_BYTES", 200)  # about 4 rows of 47 bytes
    tsv = rows_ledger(tmp_path, 30)
    time.sleep(0.05)
    ledger_seal.record_appended(tmp_path, tsv)
    forget_this_process()
    hashed = []
    real = digests.hmac_sha256
    with monkeypatch.context() as m:
        m.setattr(digests, "hmac_sha256", lambda key, data, batch=0: hashed.append(data) or real(key, data, batch))
        ledger.append(tsv, {**ROW, "run_id": "r0031"})
    rows_hashed = sum(d.count(b"\n") - 1 for d in hashed if d.startswith(b"results.tsv"))
    assert 1 <= rows_hashed <= 5  # the rows after the last full block (this one included), not all 32
    forget_this_process()
    ledger_seal.verify_ledger(tmp_path, tsv)  # and the seal it wrote holds for a full check


def test_a_ledger_sealed_by_one_hmac_over_all_rows_still_verifies_and_is_resealed_in_blocks(tmp_path):
    tsv = one_row_ledger(tmp_path)
    content = tsv.read_bytes()
    seals = chain_hash.load_seals(tmp_path)
    head = digests.hmac_sha256(chain_hash.sealing_key(), b"results.tsv\n" + content)
    seals["results"] = {"v": 2, "rows": content.count(b"\n"), "head": head, "prev": None}
    chain_hash.save_seals(tmp_path, seals)  # as the runner sealed it before blocks
    forget_this_process()
    ledger_seal.verify_ledger(tmp_path, tsv)
    ledger.append(tsv, {**ROW, "run_id": "r0002"})
    assert chain_hash.load_seals(tmp_path)["results"]["v"] == ledger_seal.LEDGER_SEAL_VERSION
    forget_this_process()
    ledger_seal.verify_ledger(tmp_path, tsv)
    tsv.write_text(tsv.read_text().replace("r0002", "r0003"))
    assert_refused(tmp_path, tsv)


@pytest.mark.parametrize(
    "damage",
    [
        {"rows": "2"},
        {"rows": None},
        {"block_bytes": 0},
        {"block_bytes": "500"},
        {"blocks": "x"},
        {"blocks": [1]},
        {"tail_at": -1},
        {"head": 5},
        {"head": "é"},
        {"prev": ["x"]},
    ],
)
def test_a_damaged_ledger_seal_is_one_line_naming_the_ledger_not_a_traceback(tmp_path, damage):
    tsv = one_row_ledger(tmp_path)
    seals = chain_hash.load_seals(tmp_path)
    seals["results"] = {**seals["results"], **damage}
    chain_hash.save_seals(tmp_path, seals)
    forget_this_process()
    assert_refused(tmp_path, tsv)


def test_damaged_decision_seals_leave_every_decision_untrusted_not_a_traceback(tmp_path):
    run_dir = tmp_path / "runs" / "r0001"
    run_dir.mkdir(parents=True)
    chain_hash.write_decision(tmp_path, run_dir, {"verdict": "advance"})
    assert chain_hash.trusted_decision(tmp_path, run_dir)[0] == {"verdict": "advance"}
    seals = chain_hash.load_seals(tmp_path)
    seals["decisions"] = ["r0001"]
    chain_hash.save_seals(tmp_path, seals)
    data, why = chain_hash.trusted_decision(tmp_path, run_dir)
    assert data is None and "not written by the runner" in why
    chain_hash.write_decision(tmp_path, run_dir, {"verdict": "revert"})  # the next decision seals again
    assert chain_hash.trusted_decision(tmp_path, run_dir)[0] == {"verdict": "revert"}
