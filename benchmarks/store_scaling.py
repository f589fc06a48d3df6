"""What storing one run's values in ``runs.sqlite`` costs as a beamtime grows (issue 19).

For each N of ``--runs`` (runs x ``--vars`` variables already stored in one fresh
``runs.sqlite``): one more run's values stored as ``store_fragment`` stores them (open the
database, ``set_run_values`` in one transaction, close), median of ``--repeat`` runs; and,
on the same database, the check each store makes of its names against the views
(``view_names``, the ``runs`` view's columns) side by side with the check it replaced
(``variable_names``, which reads every stored row). Not run in CI.

    python benchmarks/store_scaling.py [--runs 100,1000,3000] [--vars 100] [--repeat 20]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def median_ms(work, repeat: int) -> float:
    times = []
    for i in range(repeat):
        t0 = time.perf_counter()
        work(i)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="100,1000,3000")
    ap.add_argument("--vars", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)

    from damnit_dagster.storage.database import DamnitDB
    from damnit_dagster.storage.values import ReducedValue

    names = [f"v{i}" for i in range(args.vars)]

    def values(run: int) -> dict:
        return {n: ReducedValue(float(run + i)) for i, n in enumerate(names)}

    work = Path(tempfile.mkdtemp(prefix="store_scaling-"))
    try:
        DamnitDB.create(work, 1234).close()
        stored = 0
        print(f"{args.vars} variables per run; median of {args.repeat}\n")
        print("| runs stored | store one run (ms) | names check now: view columns (ms) "
              "| names check before: every row (ms) | before / now |")
        print("| --- | --- | --- | --- | --- |")
        for n in sorted(int(x) for x in args.runs.split(",")):
            with DamnitDB(work) as db:
                while stored < n:
                    stored += 1
                    db.set_run_values(1234, stored, values(stored))

            def store(i, first=stored):
                with DamnitDB(work) as db:
                    db.set_run_values(1234, first + 1 + i, values(first + 1 + i))
            store_ms = median_ms(store, args.repeat)
            stored += args.repeat
            with DamnitDB(work) as db:
                now = median_ms(lambda _: db.view_names(), args.repeat)
                before = median_ms(lambda _: db.variable_names(), args.repeat)
            print(f"| {n:,} | {store_ms:.1f} | {now:.2f} | {before:.2f} | {before / now:.0f}x |")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
