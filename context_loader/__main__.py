"""``python -m context_loader``: load a context file or evaluate one run with it.

    python -m context_loader describe CONTEXT.py --out OUT.json
    python -m context_loader exec CONTEXT.py --proposal P --run R --data raw|proc|all \\
        [--var NAME]... [--match TEXT]... [--cluster|--no-cluster] \\
        [--inputs-from RUN.h5] --fragment OUT.h5 --report OUT.json

Results travel only through the output files; log lines (and the user's prints) go to
stderr/stdout for the caller's process log. ``exec`` exits 0 even when variables fail,
non-zero when the file does not load, the run cannot be opened or the output cannot be
written.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import runner
from .errors import ContextFileErrors

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
        runner.write_json(args.out, result)
        if not result["ok"]:
            print("\n".join(result["problems"]), file=sys.stderr)
            return 1
        return 0

    try:
        runner.execute(
            args.context, args.proposal, args.run, args.data, variables=args.var,
            match=args.match, cluster=args.cluster, fragment_path=args.fragment,
            report_path=args.report, logger=log, inputs_from=args.inputs_from)
    except ContextFileErrors as err:
        runner.write_json(args.report, {"proposal": args.proposal, "run": args.run,
                                  "error": str(err), "problems": err.problems})
        print(err, file=sys.stderr)
        return 1
    except (runner.RunnerError, OSError) as err:
        runner.write_json(args.report, {"proposal": args.proposal, "run": args.run,
                                  "error": str(err)})
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
