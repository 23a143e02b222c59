"""The wave commands besides `run`: `ar.py propose`, the wave lines of `status`, the wave
settings of `ar.py session` (devices, launcher, Slurm options)."""

from __future__ import annotations

import shlex

from ..core.config import Config, Experiment, Session
from ..core.errors import UserError
from ..core.fsutil import read_json
from ..core.layout import TRAIN_PY, WAVE_FILE
from ..core.text import one_line
from ..procs import slots
from ..state import best as best_state
from ..state import candidates
from ..state.snapshots import restore_train_py


def propose(cfg: Config, args) -> tuple[list[str], int]:
    """`ar.py propose`: queue train.py as a candidate and put train.py back to the best; --list, --discard."""
    expr = cfg.expr_dir
    if args.discard:
        cand = candidates.discard(expr, args.discard)
        return [f"discarded {cand.id}" + (f" ({one_line(cand.note, 80)})" if cand.note else "")], 0
    queued = candidates.list_queued(expr)
    if args.list:
        if not queued:
            return ["queue empty: edit train.py, then `ar.py propose`"], 0
        return [one_line(f"{c.id} {c.sha256[:8]} {c.note}", 120) for c in queued], 0
    best = best_state.read_best(expr)
    from ..state.changes import check_same_code

    train = expr / TRAIN_PY  # decided against this best already, or queued already: refused before it is queued
    remark = check_same_code(expr, train.read_bytes(), best, args.force) if train.exists() else ""
    if train.exists() and not args.force:
        _refuse_queued_twin(train.read_bytes(), queued)
    cand = candidates.propose_train_py(expr)
    back = "train.py back to the best" if restore_train_py(expr, best) or best else "no best yet: train.py left as is"
    n_slots = len(slots.for_session(Session.load(expr), len(queued) + 1))
    return [
        one_line(
            f"queued {cand.id} ({cand.note or 'no RUN_NOTE'}); {back}; {len(queued) + 1} queued for "
            f"{n_slots} slot(s): `ar.py run` runs them as one wave" + (f"; {remark}" if remark else ""),
            240,
        )
    ], 0


def _refuse_queued_twin(source: bytes, queued: list) -> None:
    """The same program (RUN_NOTE and comments aside) is already in the queue: one line naming it."""
    from ..state.changes import code_key

    key = code_key(source)
    for cand in queued:
        try:
            twin = code_key((cand.path / TRAIN_PY).read_bytes()) == key
        except OSError:
            continue
        if twin:
            raise UserError(
                f"train.py is already queued as {cand.id} (the same program, RUN_NOTE and comments aside); "
                "change something, or add --force to queue it anyway"
            )


def status_lines(exp: Experiment) -> list[str]:
    """Slots (and who holds each device), the wave in flight, the queue: three lines at most."""
    cfg, session = exp.cfg, exp.session
    queued = candidates.list_queued(cfg.expr_dir)
    if session.launcher == "slurm":
        opts = session.slurm_args or "default options"
        lines = [
            one_line(f"slots: slurm, one job per queued candidate (sbatch {opts}); the cluster queues the rest", 160)
        ]
    else:
        pool = slots.for_session(session, len(queued))
        if not pool[0].devices:
            lines = ["slots: 1 (no devices found or set: candidates run one after another)"]
        else:
            held = []
            for s in pool:
                who = [slots.holder(d) for d in s.devices]
                held.append(f"[{','.join(s.devices)}] " + (next((w for w in who if w), "") or "free"))
            lines = [one_line(f"slots: {len(pool)} ({'; '.join(held)})", 240)]
    marker = read_json(cfg.expr_dir / WAVE_FILE, "wave record", "delete it", default=None)
    if marker:
        lines.append(
            f"wave {marker.get('wave')} in flight: {marker.get('candidates')} candidate(s) from "
            f"{marker.get('first_run')} (runner pid {marker.get('pid')})"
        )
    if queued:
        shown = ", ".join(f"{c.id} {one_line(c.note, 30)}" for c in queued[:5])
        more = f" +{len(queued) - 5} more" if len(queued) > 5 else ""
        lines.append(one_line(f"queued: {len(queued)} ({shown}{more}); `ar.py run` runs them as one wave", 240))
    return lines


def apply_session(exp: Experiment, args) -> None:
    """The wave settings of `ar.py session` (--devices, --devices-per-run, --launcher, --slurm-args)."""
    cfg, session = exp.cfg, exp.session
    if args.devices is not None:
        session.devices = None if args.devices == "auto" else slots.parse_devices(args.devices)
    if args.devices_per_run is not None:
        session.devices_per_run = args.devices_per_run
    if args.slurm_args is not None:
        try:
            shlex.split(args.slurm_args)
        except ValueError as exc:
            raise UserError(
                f"ar.py session: --slurm-args {args.slurm_args!r}: {exc}; quote it as a shell would"
            ) from None
        session.slurm_args = args.slurm_args
    if args.launcher is not None:
        session.launcher = args.launcher
    if session.launcher == "local" and session.devices:
        slots.make_slots(session.devices, session.devices_per_run)  # a too-large --devices-per-run: one line
    if session.launcher == "slurm" and (args.launcher or args.slurm_args is not None):
        from ..procs import slurm  # only the Slurm launcher pays for it

        slurm.check_visible(cfg.expr_dir, shlex.split(session.slurm_args))
