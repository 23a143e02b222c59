"""Command line of ar.py: run, propose, status, tail, report, session, chain, upgrade.

Every user error ends as one line on stderr and exit code 2; run outcomes
(crash, timeout, ...) are results, not errors, and exit 0.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Callable

from ..core.config import Config, Experiment, Session
from ..core.errors import UserError
from ..core.layout import LEDGER


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UserError(f"{self.prog}: {message} (see --help)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only` (a command's name), that command's sub-parser alone:
    `ar.py run` is typed at every iteration, and building the ten others costs it ~3 ms."""
    parser = _Parser(prog="ar.py", description="Run and inspect this autoresearch experiment.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, add in SUB_PARSERS.items():
        if only in (None, name):
            add(sub)
    return parser


def _add_run(sub) -> None:
    run = sub.add_parser("run", help="one iteration: train, measure, keep or revert")
    run.add_argument("--seconds", type=_positive_int, help="time budget for this run (default: session, then answers)")
    run.add_argument(
        "--force",
        action="store_true",
        help="run even though the session has ended (after STOP), or train.py was already decided against this best",
    )


def _add_status(sub) -> None:
    status = sub.add_parser("status", help="where the experiment stands")
    status.add_argument("--compact", action="store_true", help="at most 10 lines")
    status.add_argument("--last", type=_positive_int, default=5, metavar="N", help="show the last N runs")


def _add_tail(sub) -> None:
    tail = sub.add_parser("tail", help="the traceback region of a run's log")
    tail.add_argument("--run", required=True, metavar="ID", help="run id, e.g. r0003")
    tail.add_argument("--lines", type=_positive_int, default=40, metavar="N")


def _add_report(sub) -> None:
    report = sub.add_parser("report", help="Markdown summary")
    report.add_argument("--plot", action="store_true", help="also write progress.png")
    report.add_argument("--html", action="store_true", help="write report.html instead (one page, no network)")


def _add_history(sub) -> None:
    history = sub.add_parser("history", help="what was tried: one line per candidate")
    history.add_argument("--last", type=_positive_int, metavar="N", help="the last N candidates (default 100)")
    history.add_argument("--grep", metavar="WORD", help="only candidates whose line mentions WORD (any case)")
    history.add_argument("--kept", action="store_true", help="only the candidates that became the best")


def _add_session(sub) -> None:
    """Termination, budgets, integrity, devices, the noise rule."""
    session = sub.add_parser("session", help="termination conditions and run defaults")
    session.add_argument("--max-runs", type=_positive_int)
    session.add_argument("--plateau", type=_positive_int, help="stop after N ok runs without improvement")
    session.add_argument("--threshold", type=_number, help="stop when the primary reaches this value")
    session.add_argument("--unlimited", action="store_true", help="clear every termination condition")
    session.add_argument("--seconds", type=_positive_int, help="default time budget per run")
    session.add_argument("--grace", type=_number, help="seconds between SIGTERM and SIGKILL on timeout")
    session.add_argument(
        "--keep-checkpoints", type=int, metavar="N", help="latest runs that keep their checkpoint besides the best"
    )
    session.add_argument("--chain-mode", choices=("off", "suggest", "auto"))
    session.add_argument("--stop", action="store_true", help="tell the loop to stop (terminated_by=manual)")
    session.add_argument("--resume", action="store_true", help="undo --stop")
    session.add_argument(
        "--integrity",
        metavar="MODE",
        help="off, files or evaluator (default: evaluator when prepare.py defines evaluate(), else files)",
    )

    session.add_argument(
        "--devices", metavar="IDS", help="devices a wave leases, e.g. 0,1,2,3 (auto: the visible GPUs)"
    )
    session.add_argument("--devices-per-run", type=_positive_int, metavar="N", help="devices per candidate")
    session.add_argument("--launcher", choices=("local", "slurm"), help="where candidates run")
    session.add_argument(
        "--slurm-args", metavar="OPTS", help='sbatch options: --slurm-args="--partition=gpu --gres=gpu:1"'
    )

    session.add_argument("--repeats", type=_positive_int, metavar="N", help="runs of the first baseline (noise)")
    session.add_argument("--margin", type=_number, metavar="K", help="noise margin in standard errors (default 2)")
    session.add_argument("--strict", action="store_true", help="single-run rule: better once is better")
    session.add_argument("--noise-aware", action="store_true", help="undo --strict")


def _add_propose(sub) -> None:
    propose = sub.add_parser("propose", help="queue train.py as a wave candidate, put train.py back to the best")
    propose.add_argument("--list", action="store_true", help="show the queued candidates")
    propose.add_argument("--discard", metavar="ID", help="drop a queued candidate, e.g. c0003")
    propose.add_argument("--force", action="store_true", help="queue it even if already decided against this best")


def _add_protect(sub) -> None:
    protect = sub.add_parser("protect", help="the files the agent must not change")
    protect.add_argument("--accept", action="store_true", help="accept their current content as the new reference")


def _add_chain(sub) -> None:
    chain = sub.add_parser("chain", help="start a child experiment from this one's best")
    chain.add_argument("--new-slug", required=True)
    chain.add_argument("--goal", required=True)
    chain.add_argument("--rationale", required=True)
    chain.add_argument("--primary-metric")
    chain.add_argument("--primary-direction", choices=("min", "max"))
    chain.add_argument("--template", help="template source (default: the one recorded in the answers)")


def _add_upgrade(sub) -> None:
    upgrade = sub.add_parser("upgrade", help="copier update this experiment (checks git first, reports conflicts)")
    upgrade.add_argument("--rollback", action="store_true", help="undo an upgrade not yet committed")


SUB_PARSERS = {  # in the order --help lists them
    "run": _add_run,
    "status": _add_status,
    "tail": _add_tail,
    "report": _add_report,
    "history": _add_history,
    "session": _add_session,
    "propose": _add_propose,
    "protect": _add_protect,
    "chain": _add_chain,
    "upgrade": _add_upgrade,
}


# Every command is (cfg, args) -> (lines to print, exit code).
Output = tuple[list[str], int]


def cmd_run(cfg: Config, args) -> Output:
    from ..loop import iteration
    from . import run_output
    from .upgrades import refuse_while_conflicted

    refuse_while_conflicted(cfg.expr_dir)  # an upgrade left conflicts: nothing runs until resolved
    exp = Experiment.load(cfg)
    if not args.force:
        from ..state.messages import refuse_after_stop

        refuse_after_stop(exp)  # after STOP: one line, nothing allocated
    live = sys.stdout.isatty() and sys.stderr.isatty()
    from ..integrity.checks import start_run

    start_run()  # the runner collects every orphan of what it starts
    return run_output.lines(exp, iteration.iterate(exp, args.seconds, live, args.force)), 0


def cmd_session(cfg: Config, args) -> Output:
    import copy

    session = Session.load(cfg.expr_dir)
    before = copy.copy(session)
    if args.unlimited:
        session.max_runs = session.plateau = session.threshold = None
        session.unlimited = True
    for name in ("max_runs", "plateau", "threshold"):
        value = getattr(args, name)
        if value is not None:
            setattr(session, name, value)
            session.unlimited = False
    if args.seconds is not None:
        session.seconds = args.seconds
    if args.grace is not None:
        if args.grace < 0:
            raise UserError(f"ar.py session: --grace {args.grace} must be >= 0")
        session.grace_s = args.grace
    if args.keep_checkpoints is not None:
        if args.keep_checkpoints < 0:
            raise UserError(f"ar.py session: --keep-checkpoints {args.keep_checkpoints} must be >= 0")
        session.keep_checkpoints = args.keep_checkpoints
    if args.chain_mode:
        session.chain_mode = args.chain_mode
    if args.stop:
        session.stopped = True
    if args.resume:
        session.stopped = False
    if args.integrity is not None:
        from ..integrity import checks

        checks.check_choice(cfg, args.integrity)
        session.integrity = args.integrity
    if args.repeats is not None:
        session.repeats = args.repeats
    if args.margin is not None:
        if args.margin <= 0:
            raise UserError(f"ar.py session: --margin {args.margin} must be > 0")
        session.margin = args.margin
    if args.strict:
        session.strict = True
    if args.noise_aware:
        session.strict = False
    from . import proposals

    proposals.apply_session(Experiment(cfg, session), args)
    if args.integrity is not None or args.strict or args.noise_aware or args.margin is not None:
        from ..integrity import checks

        checks.change_rules(cfg, before, session, "ar.py session")  # a person only; recorded
    session.save(cfg.expr_dir)
    return [session.describe()], 0


def _later(module: str, name: str) -> Callable[[Config, object], Output]:
    """A command whose module is imported only when it runs (keeps `ar.py run` startup small)."""

    def command(cfg: Config, args) -> Output:
        return getattr(importlib.import_module(f"..{module}", __package__), name)(cfg, args)

    return command


COMMANDS: dict[str, Callable[[Config, object], Output]] = {
    "run": cmd_run,
    "session": cmd_session,
    "propose": _later("commands.proposals", "propose"),
    "status": _later("commands.inspect", "status"),
    "tail": _later("commands.inspect", "tail"),
    "report": _later("commands.inspect", "report"),
    "history": _later("commands.history", "history"),
    "protect": _later("integrity.checks", "protect_command"),
    "chain": _later("commands.copier_cmds", "chain"),
    "upgrade": _later("commands.copier_cmds", "upgrade"),
}


def main(argv: list[str] | None = None, expr_dir: Path | None = None) -> int:
    expr_dir = Path(expr_dir or Path(__file__).resolve().parents[2])  # arunner/commands/cli.py
    try:
        argv = sys.argv[1:] if argv is None else argv
        args = build_parser(argv[0] if argv and argv[0] in SUB_PARSERS else None).parse_args(argv)
        cfg = Config.load(expr_dir)
        lines, code = COMMANDS[args.command](cfg, args)
        for line in lines:
            print(line)
        if args.command == "run":  # off the critical path: the result is recorded and printed
            sys.stdout.flush()
            from ..core import ledger_seal
            from ..state.best import drop_old

            drop_old(expr_dir)
            ledger_seal.record_appended(expr_dir, expr_dir / LEDGER)  # the next check then hashes nothing
        return code
    except UserError as exc:
        print(f"ar.py: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ar.py: interrupted; the next `ar.py run` records the unfinished run", file=sys.stderr)
        return 130
