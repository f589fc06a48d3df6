"""What storing one run's results costs, next to what computing them costs.

For each mock run: evaluate the 25-variable baseline context
(``damnit_dagster/templates/context_25vars.py``) in-process ("compute"), write the
fragment ("fragment"), store it into a new run file ("store new": lock, merge into a
temporary file, fsync, rename, one SQLite transaction), then store the same results again
into the now existing file ("store again", the cost of a re-run, which copies the whole
run file). Sizes are of the run file.

    python benchmarks/storage_cost.py [--runs 1-3] [--ntrains 100] [--keep DIR]
        [--context FILE]   (e.g. the context ``cheap_context.py 100`` prints)
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONTEXT = HERE.parent / "damnit_dagster" / "templates" / "context_25vars.py"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="1-3", help="mock run numbers, e.g. 1-3,6")
    ap.add_argument("--ntrains", type=int, default=100)
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it")
    ap.add_argument("--context", type=Path, default=CONTEXT,
                    help="the context file (default: the 25-variable one)")
    args = ap.parse_args(argv)

    os.environ.setdefault("MPLBACKEND", "Agg")
    from context_loader.contextfile import ContextFile
    from context_loader.evaluate import evaluate_run, open_run
    from context_loader.fragment import write_fragment
    from damnit_dagster.ops.mockdata import make_proposal, parse_runs
    from damnit_dagster.storage import init_damnit_dir, store_fragment

    runs = parse_runs(args.runs)
    work = args.keep or Path(tempfile.mkdtemp(prefix="storage_cost_"))
    os.environ["EXTRA_DATA_DATA_ROOT"] = os.environ["XFEL_DATA_ROOT"] = str(work / "data")
    proposal = 1234
    pdir = make_proposal(work / "data", proposal, runs, ntrains=args.ntrains)
    amore = pdir / "usr" / "Shared" / "amore"
    paths = init_damnit_dir(amore, proposal, context_source=args.context)
    ctx = ContextFile.from_path(paths.context_file)
    quiet = logging.getLogger("storage_cost.context")  # the context's deliberate errors
    quiet.setLevel(logging.CRITICAL)
    quiet.propagate = False

    header = (f"{'run':>4} {'vars':>5} {'compute s':>10} {'fragment s':>11} {'store new s':>12}"
              f" {'store again s':>14} {'store/compute':>14} {'(frag+store)/compute':>21}"
              f" {'file MB':>8}")
    print(f"{len(ctx.vars)} variables, {args.ntrains} trains per run; work dir {work}")
    print(header)
    print("-" * len(header))
    totals = [0.0, 0.0, 0.0, 0.0]
    for run in runs:
        t0 = time.perf_counter()
        dc, _ = open_run(proposal, run)
        results = evaluate_run(ctx, dc, run, proposal, logger=quiet)
        t1 = time.perf_counter()
        frag = write_fragment(paths.extracted_dir / f"bench_r{run}.h5", results.cells,
                              results.errors)
        t2 = time.perf_counter()
        shutil.copyfile(frag, frag.with_suffix(".again.h5"))
        t3 = time.perf_counter()
        store_fragment(paths.root, proposal, run, frag)
        t4 = time.perf_counter()
        store_fragment(paths.root, proposal, run, frag.with_suffix(".again.h5"))
        t5 = time.perf_counter()
        row = [t1 - t0, t2 - t1, t4 - t3, t5 - t4]
        totals = [a + b for a, b in zip(totals, row)]
        size = paths.run_file(proposal, run).stat().st_size / 1e6
        print(f"{run:>4} {len(results.cells) + len(results.errors):>5} {row[0]:>10.3f}"
              f" {row[1]:>11.3f} {row[2]:>12.3f} {row[3]:>14.3f}"
              f" {row[2] / row[0]:>13.1%} {(row[1] + row[2]) / row[0]:>20.1%} {size:>8.2f}")
    n = len(runs)
    print("-" * len(header))
    print(f"{'mean':>4} {'':>5} {totals[0] / n:>10.3f} {totals[1] / n:>11.3f}"
          f" {totals[2] / n:>12.3f} {totals[3] / n:>14.3f}"
          f" {totals[2] / totals[0]:>13.1%} {(totals[1] + totals[2]) / totals[0]:>20.1%}")
    print("store = store new (lock, merge, fsync, rename, SQLite); fragment = write_fragment "
          "(summaries and thumbnails), done by the evaluating process")
    if args.keep is None:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
