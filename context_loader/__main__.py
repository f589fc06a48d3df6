"""``python -m context_loader``: load a context file or evaluate one run with it.

    python -m context_loader describe CONTEXT.py --out OUT.json
    python -m context_loader exec CONTEXT.py --proposal P --run R --data raw|proc|all \\
        [--var NAME]... [--match TEXT]... [--cluster|--no-cluster] \\
        [--inputs-from RUN.h5] --fragment OUT.h5 --report OUT.json
    python -m context_loader exec-runs CONTEXT.py --proposal P --data raw|proc|all \\
        [--var NAME]... [--match TEXT]... [--cluster|--no-cluster] [--header TEXT] \\
        [--inputs-from-pattern RUN_{run}.h5] --task RUN OUT.h5 OUT.json LOG [--task ...]

Results travel only through the output files; log lines (and the user's prints) go to
stderr/stdout for the caller's process log. ``exec`` exits 0 even when variables fail,
non-zero when the file does not load, the run cannot be opened or the output cannot be
written.

``exec-runs`` evaluates several runs one after the other with one load of the context
file (a task of a Slurm job array): each run's output is appended to its own ``LOG``,
after ``--header`` (``{run}`` replaced), and each run's report is written when it ends,
also when the run fails (then with its ``error``). It exits 0 unless the file does not
load.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import runner
from .contextfile import ContextFile
from .errors import ContextFileErrors
from .heap import keep_freed_heap
from .progress import write_json

log = logging.getLogger("context_loader")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m context_loader", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("describe", help="load a context file, write its variables as JSON")
    d.add_argument("context", type=Path)
    d.add_argument("--out", type=Path, required=True)
    e = sub.add_parser("exec", help="evaluate one run, write a fragment and a report")
    e.add_argument("context", type=Path)
    e.add_argument("--proposal", type=int, required=True)
    e.add_argument("--run", type=int, required=True)
    e.add_argument("--data", choices=("raw", "proc", "all"), required=True)
    e.add_argument("--var", action="append", default=[], help="exact variable name")
    e.add_argument("--match", action="append", default=[], help="substring of titles")
    e.add_argument("--cluster", action=argparse.BooleanOptionalAction, default=None,
                   help="only cluster (or with --no-cluster, only non-cluster) variables")
    e.add_argument("--inputs-from", type=Path, default=None,
                   help="compute only the selected variables, reading the saved ones they "
                        "depend on from this run file")
    e.add_argument("--fragment", type=Path, required=True)
    e.add_argument("--report", type=Path, required=True)
    m = sub.add_parser("exec-runs", help="evaluate several runs, each into its own files")
    m.add_argument("context", type=Path)
    m.add_argument("--proposal", type=int, required=True)
    m.add_argument("--data", choices=("raw", "proc", "all"), required=True)
    m.add_argument("--var", action="append", default=[], help="exact variable name")
    m.add_argument("--match", action="append", default=[], help="substring of titles")
    m.add_argument("--cluster", action=argparse.BooleanOptionalAction, default=None)
    m.add_argument("--header", default="", help="first line of each run's log ({run})")
    m.add_argument("--inputs-from-pattern", default=None,
                   help="as --inputs-from, the run file of each run ({run})")
    m.add_argument("--task", nargs=4, action="append", required=True,
                   metavar=("RUN", "FRAGMENT", "REPORT", "LOG"))
    args = ap.parse_args(argv)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    os.umask(0)  # files the user's code and we create are shared (0o666), as in DAMNIT
    # Modules next to the context file are importable, and (``python -m`` puts the
    # working directory on sys.path) those of the DAMNIT folder the runner starts in, as
    # in DAMNIT, also when the file evaluated is a copy kept elsewhere.

    if args.command == "describe":
        result = runner.describe(args.context)
        write_json(args.out, result)
        if not result["ok"]:
            print("\n".join(result["problems"]), file=sys.stderr)
            return 1
        return 0

    keep_freed_heap()   # this process evaluates runs
    if args.command == "exec-runs":
        return _exec_runs(args)
    try:
        runner.execute(
            args.context, args.proposal, args.run, args.data, variables=args.var,
            match=args.match, cluster=args.cluster, fragment_path=args.fragment,
            report_path=args.report, logger=log, inputs_from=args.inputs_from)
    except ContextFileErrors as err:
        write_json(args.report, {"proposal": args.proposal, "run": args.run,
                                  "error": str(err), "problems": err.problems})
        print(err, file=sys.stderr)
        return 1
    except (runner.RunnerError, OSError) as err:
        write_json(args.report, {"proposal": args.proposal, "run": args.run,
                                  "error": str(err)})
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _exec_runs(args) -> int:
    """Evaluate each ``--task``'s run with one load of the context file, the output of
    each going to its own log."""
    tasks = [(int(run), Path(fragment), Path(report), Path(log_path))
             for run, fragment, report, log_path in args.task]
    try:
        ctx = ContextFile.from_path(args.context)
    except ContextFileErrors as err:
        for run, _, report, log_path in tasks:
            _output_to(log_path, args.header.format(run=run))
            print(err, file=sys.stderr)
            write_json(report, {"proposal": args.proposal, "run": run,
                                       "error": str(err), "problems": err.problems})
        return 1
    for run, fragment, report, log_path in tasks:
        _output_to(log_path, args.header.format(run=run))
        try:
            runner.execute(ctx, args.proposal, run, args.data, variables=args.var,
                           match=args.match, cluster=args.cluster, fragment_path=fragment,
                           report_path=report, logger=log, inputs_from=(
                               Path(args.inputs_from_pattern.format(run=run))
                               if args.inputs_from_pattern else None))
        except (runner.RunnerError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            write_json(report, {"proposal": args.proposal, "run": run,
                                       "error": str(err)})
    return 0


def _output_to(log_path: Path, header: str) -> None:
    """Send this process's stdout and stderr (also of its children) to the end of
    ``log_path``, starting with ``header``."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    if header:
        print(f"\n{header}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
