"""The ``damnit-dagster`` command, mirroring DAMNIT's ``damnit`` command.

Every command acts on the DAMNIT folder in the current directory, or the one given with
``--dir``. Errors are printed as one clear line and give a non-zero exit status.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import sys
from pathlib import Path

import click

from damnit_dagster.events.inbox import EventInbox, InvalidEvent
from damnit_dagster.storage.database import DamnitDB
from damnit_dagster.storage.folder import init_damnit_dir
from damnit_dagster.storage.layout import DamnitPaths
from damnit_dagster.storage.proposal_data import ProposalNotFound, proposal_dir
from damnit_dagster.storage.settings import SETTINGS, SettingError, normalise_key, parse_setting

EXAMPLE_CONTEXT = Path(__file__).parent.parent / "templates" / "context_example.py"


class Folder:
    """The DAMNIT folder a command works on."""

    def __init__(self, path):
        self.paths = DamnitPaths(Path(path))
        self._home: Path | None = None

    def use_instance(self) -> Path:
        """Point this command (and what it starts) at the folder's own Dagster instance
        (found once per command)."""
        from damnit_dagster.plugins.home import use_instance_of

        if self._home is None:
            self.db().close()   # a clear error if this is not a DAMNIT folder; gives a db_id
            self._home = use_instance_of(self.paths.root)
        return self._home

    def db(self) -> DamnitDB:
        """Open ``runs.sqlite``; a clear error if this is not a DAMNIT folder."""
        try:
            return DamnitDB(self.paths.root)
        except FileNotFoundError:
            raise click.ClickException(
                f"{self.paths.root} has no runs.sqlite: create it with "
                f"'damnit-dagster proposal NUMBER' (or init)") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=".",
              help="The DAMNIT folder (default: the current directory).")
@click.pass_context
def main(ctx, directory):
    """DAMNIT's backend on Dagster: compute a context file's variables for every run."""
    _spare_the_garbage_collector(ctx)
    ctx.obj = Folder(directory)


def _spare_the_garbage_collector(ctx) -> None:
    """A command loads about a million objects that live until it ends (Dagster, the
    scientific stack, the user's context). Python's cyclic collector would scan them over
    and over while they load, and all of them again while the interpreter exits: a large
    part of a short command (see benchmarks/results.md). Collect young objects less often,
    and freeze what exists once the command is done, so tearing down does not scan it."""
    gc.set_threshold(50_000, 20, 100)
    ctx.call_on_close(gc.freeze)


def find_proposal_dir(proposal: int) -> Path:
    """The proposal's data folder, or a clear error."""
    try:
        return proposal_dir(proposal)
    except ProposalNotFound as e:
        raise click.ClickException(str(e)) from None


@main.command()
@click.argument("proposal", type=int, required=False)
@click.pass_obj
def proposal(folder: Folder, proposal):
    """Show the folder's proposal, or create a blank database for PROPOSAL.

    In a folder without runs.sqlite this creates one (and puts the example context
    file there if there is no context.py), as in "Starting from scratch".
    """
    if proposal is None:
        with folder.db() as db:
            click.echo(db.proposal)
        return
    try:
        init_damnit_dir(folder.paths.root, proposal, context_source=EXAMPLE_CONTEXT)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{folder.paths.root}: proposal {proposal}")
    try:
        sync_context(folder)
    except click.ClickException as e:  # the database is there; the file needs fixing
        click.echo(f"warning: {e.message}", err=True)


@main.command()
@click.argument("proposal", type=int)
@click.option("--context", "context_file", type=click.Path(exists=True, dir_okay=False),
              help="Context file to start with (default: the spec's example).")
@click.option("--path", "target", type=click.Path(file_okay=False),
              help="Where to create the folder (default: the proposal's usr/Shared/amore).")
def init(proposal, context_file, target):
    """Create the DAMNIT folder of PROPOSAL (found through EXTRA_DATA_DATA_ROOT)."""
    target = Path(target) if target else find_proposal_dir(proposal) / "usr" / "Shared" / "amore"
    paths = init_damnit_dir(target, proposal, context_source=context_file or EXAMPLE_CONTEXT)
    click.echo(paths.root)


@main.command("db-config")
@click.argument("key", required=False)
@click.argument("value", required=False)
@click.option("-d", "--delete", is_flag=True, help="Remove the setting.")
@click.pass_obj
def db_config(folder: Folder, key, value, delete):
    """Show or change a backend setting (e.g. noncluster_mem 50G).

    Without KEY: list all settings. With KEY only: show it.
    """
    with folder.db() as db:
        if key is None:
            for k, v in sorted(db.metameta.items()):
                click.echo(f"{k}={v!r}")
            return
        key = normalise_key(key)
        if delete:
            if value is not None:
                raise click.UsageError("--delete takes no VALUE")
            db.metameta.pop(key, None)
            return
        if value is None:
            if key not in db.metameta and key not in SETTINGS:
                raise click.ClickException(f"no setting {key!r}")
            click.echo(repr(db.setting(key)))
            return
        try:
            db.metameta[key] = parse_setting(key, value)
        except SettingError as e:
            raise click.ClickException(str(e)) from None


@main.command()
@click.argument("kind", type=click.Choice(["migration", "calibration"]))
@click.argument("runs", nargs=-1, required=True)
@click.pass_obj
def event(folder: Folder, kind, runs):
    """Announce new data of RUNS (migration: raw, calibration: proc) to the backend.

    RUNS are run numbers or ranges (``7 8 10-20``), announced in the order given; the
    backend gathers events that arrive together into ranged runs."""
    from damnit_dagster.plugins.home import inbox_path
    folder.use_instance()
    with folder.db() as db:
        proposal = db.proposal
    inbox = EventInbox(inbox_path())
    for run in _expand_ranges(runs):
        try:
            stored = inbox.add(kind, proposal, run, source="cli")
        except InvalidEvent as e:
            raise click.ClickException(f"run {run}: {e}") from None
        click.echo(f"{kind} of p{proposal} r{stored.run}: event {stored.id}")


def _expand_ranges(runs) -> list[str]:
    """``["3", "10-12"]`` -> ``["3", "10", "11", "12"]`` (anything else is left to the
    inbox to reject)."""
    out = []
    for run in runs:
        first, _, last = str(run).partition("-")
        if first.isdigit() and last.isdigit() and int(first) <= int(last):
            out += [str(r) for r in range(int(first), int(last) + 1)]
        else:
            out.append(run)
    return out


def sync_context(folder: Folder, describe=None) -> list[str]:
    """Load context.py (in the folder's context_python, or with ``describe``, see
    :func:`damnit_dagster.execution.describe.describe_file`) and store its variables in
    runs.sqlite, as
    DAMNIT's read-context does; returns the saved variables' names.

    Raises a ClickException listing every problem of the file, which changes nothing.
    """
    from damnit_dagster.events.gui_updates import GuiUpdates
    from damnit_dagster.execution.describe import describe_file
    from damnit_dagster.execution.process_run import same_interpreter

    describe = describe or describe_file
    folder.use_instance()
    with folder.db() as db:
        python = db.setting("context_python")
        if not folder.paths.context_file.exists():
            raise click.ClickException(f"no context file: {folder.paths.context_file}")
        result = describe(folder.paths.context_file, folder.paths.root,
                          None if same_interpreter(python) else python)
        if not result["ok"]:
            for problem in result["problems"]:
                click.echo(problem, err=True)
            raise click.ClickException(f"{folder.paths.context_file} has "
                                       f"{len(result['problems'])} problem(s); nothing changed")
        changed = db.sync_variables(result["variables"])
        gui = GuiUpdates.for_folder(folder.paths.root, db.metameta.to_dict())
    gui.variables_changed(result["variables"], changed)
    gui.flush(timeout=3.0, connect=True)
    return [v["name"] for v in result["variables"] if not v.get("transient")]


@main.command("read-context")
@click.pass_obj
def read_context(folder: Folder):
    """Check context.py and store its variables (names, titles, tags) in runs.sqlite.

    Every problem of the file is printed, each naming the file, line and variable.
    """
    saved = sync_context(folder)
    click.echo(f"{len(saved)} variables: {', '.join(saved)}")


@main.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--match", multiple=True, help="Only variables whose title contains this "
              "(case-insensitive); repeatable.")
@click.option("--var", "variables", multiple=True, help="Only this variable (exact name); "
              "repeatable; wins over --match.")
@click.option("--data", type=click.Choice(["raw", "proc", "all"]), default="all",
              show_default=True, help="Which variables: raw, proc or all.")
@click.option("--direct", is_flag=True, help="Do the work in this process even when the "
              "backend runs (by default its daemon runs a backfill).")
@click.option("--stale", is_flag=True, help="Per run, only the variables whose stored "
              "value is stale (never computed, code or an input changed) and their "
              "dependents; their other inputs are read from the run's file. Always in "
              "this process.")
@click.option("--slurm/--local", "slurm", default=None, help="Evaluate the non-cluster "
              "variables in a Slurm job array (a task per run or chunk of runs, at most "
              "concurrent_jobs at once), or on this host. Default: the reprocess_executor "
              "setting, else local.")
@click.pass_obj
def reprocess(folder: Folder, runs, match, variables, data, direct, stale, slurm):
    """Recompute variables for RUNS (numbers, ranges like 5-9, or 'all').

    While the backend (listen/serve) runs, a Dagster backfill does it: its daemon queues
    the work with the live processing. Otherwise, or with --direct, the command executes
    the Dagster runs itself. Blocks until done, with a progress bar. Exits 0 when every
    run was processed, even if some variables failed (they are listed); non-zero when a
    run could not be processed. With --stale, it first prints what is stale and why; a
    context file that does not load is refused (nothing changes). Ctrl-C cancels the
    work, Slurm jobs included.
    """
    from damnit_dagster.ops.backend import backend_running
    from damnit_dagster.reprocess.ahead import evaluation_server, submitted_ahead

    folder.use_instance()
    with folder.db() as db:
        executor = ("slurm" if slurm else "local") if slurm is not None else (
            db.setting("reprocess_executor") or "local")
    direct = direct or stale or not backend_running(folder.paths.root)
    run_list, no_data, proposal = _runs_to_reprocess(folder, runs)
    slurm_ahead = direct and executor == "slurm" and not stale
    if slurm_ahead:   # the variables table knows the version the array evaluates
        sync_context(folder)
    try:   # what can start before Dagster is imported does (see .reprocess.ahead)
        with (evaluation_server(folder.paths, direct and executor == "local") as server,
              submitted_ahead(folder.paths.root, run_list, match, variables, data,
                              wanted=slurm_ahead) as array):
            results = _reprocess(folder, run_list, match, variables, data, direct, server,
                                 stale, executor, array, synced=slurm_ahead)
    except KeyboardInterrupt:   # before its Dagster runs started (they say it themselves)
        from damnit_dagster.reprocess.results import INTERRUPTED, RunResult

        results = {run: RunResult(run, run_error=INTERRUPTED) for run in run_list}
    _report(results, no_data, proposal)


def _reprocess(folder: Folder, run_list: list[int], match, variables, data, direct: bool,
               server, stale, executor: str, array, synced: bool) -> dict:
    import dagster as dg

    from damnit_dagster.reprocess.backfill import reprocess as run_backfill
    from damnit_dagster.reprocess.direct import reprocess_direct
    from damnit_dagster.reprocess.stale import reprocess_stale

    # Dagster's storages load first, while the server (if any) loads the context file
    with dg.DagsterInstance.get() as instance:
        if not synced:   # like DAMNIT's --update-vars: the table knows every variable
            sync_context(folder, describe=server.describe if server else None)
        work = (functools.partial(reprocess_direct, server=server, slurm_array=array)
                if direct else run_backfill)
        if stale:
            if data != "all":
                raise click.BadParameter("--stale takes every variable's trigger; use "
                                         "--var or --match to narrow it", param_hint="--data")
            work = functools.partial(reprocess_stale, server=server, say=click.echo)
        return _reprocess_runs(folder, run_list, match, variables, data, direct,
                               functools.partial(work, instance=instance, executor=executor))


def _runs_to_reprocess(folder: Folder, runs) -> tuple[list[int], list[int], int]:
    """(runs to reprocess, runs without raw data, proposal) of a RUNS argument."""
    from damnit_dagster.reprocess.selection import runs_with_data
    from damnit_dagster.storage.proposal_data import runs_with_raw_data

    with folder.db() as db:
        proposal = db.proposal
        known = set(db.runs(proposal))
    find_proposal_dir(proposal)   # a clear error when the proposal's data is not there
    try:
        run_list, no_data = runs_with_data(" ".join(runs), known, runs_with_raw_data(proposal))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="RUNS") from None
    for run in no_data:
        click.echo(f"r{run}: skipped, no raw data in the proposal folder", err=True)
    if not run_list:
        raise click.ClickException("no run to reprocess has raw data")
    return run_list, no_data, proposal


def _reprocess_runs(folder: Folder, run_list: list[int], match, variables, data,
                    direct: bool, work) -> dict:
    """The per-run results of reprocessing ``run_list`` with ``work``, with a progress
    bar."""
    with (click.progressbar(length=len(run_list), label="Reprocessing", show_pos=True,
                            file=sys.stderr) as bar,
          _user_output_to_process_logs(direct)):
        def progress(p):
            bar.length = p.total
            bar.label = f"Reprocessing ({p.status})"
            bar.update(p.done - bar.pos)

        try:
            results = work(folder.paths.root, run_list, match=match, variables=variables,
                           data=data, progress=progress)
        except ValueError as e:
            raise click.ClickException(str(e)) from None
    return results


def _report(results: dict, no_data: list[int], proposal: int) -> None:
    """Print what a reprocess did; fail when a run could not be processed."""
    from damnit_dagster.reprocess.results import report

    lines, not_processed = report(results, no_data, proposal)
    for line in lines:
        click.echo(line)
    if not_processed:
        raise click.ClickException(
            f"not processed: {', '.join(f'r{r}' for r in not_processed)} "
            f"(see process_logs/ and the Dagster UI)")


@contextlib.contextmanager
def _user_output_to_process_logs(direct: bool):
    """In a direct reprocess, what the user's code prints is in ``process_logs/`` (and a
    step copies it to its compute log, here the terminal): keep the terminal for the
    progress bar and the summary."""
    if not direct:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        yield


@main.command()
@click.option("--port", type=int, help="Port of the Dagster UI on 127.0.0.1 (default: free).")
@click.pass_obj
def listen(folder: Folder, port):
    """Run the backend in the foreground: Dagster UI, daemon, event sources, reload.

    Exits 78 when the backend cannot start (the reason in one line; Supervisor does not
    restart it), 1 when one of its processes died later.
    """
    from damnit_dagster.ops.backend import run_forever
    folder.use_instance()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    for ours in ("damnit", "damnit_dagster"):   # the libraries' chatter stays out of amore.log
        logging.getLogger(ours).setLevel(logging.INFO)
    sys.exit(run_forever(folder.paths.root, port=port))


@main.command()
@click.option("--port", type=int, help="Port of the Dagster UI on 127.0.0.1 (default: free).")
@click.pass_obj
def serve(folder: Folder, port):
    """Start the backend under Supervisor (supervisord.conf in the folder).

    Returns once the backend is up (its Dagster UI answers and its daemon ticks); exits
    non-zero with the reason when it cannot start.
    """
    from damnit_dagster.ops import supervisor
    from damnit_dagster.ops.serving import BackendDidNotStart, serve_folder

    home = folder.use_instance()
    try:
        url = serve_folder(folder.paths.root, home, port, env=_instance_env())
    except (BackendDidNotStart, supervisor.SupervisorError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(supervisor.status(folder.paths.root))
    click.echo(f"Dagster UI: {url} (supervisorctl -c "
               f"{supervisor.config_path(folder.paths.root)} status damnit)")


@main.command()
@click.option("--workdir", type=click.Path(file_okay=False), default="demo", show_default=True,
              help="Folder for the mock proposal, the DAMNIT folder and the Dagster instance "
                   "(emptied first).")
@click.option("--runs", type=click.IntRange(1, 100), default=6, show_default=True)
@click.option("--port", type=int, help="Port of the Dagster UI on 127.0.0.1 (default: free).")
@click.option("--keep-running", is_flag=True, help="Leave the backend running at the end.")
def demo(workdir, runs, port, keep_running):
    """Process a mock proposal end to end: events in, results in the table and the UI."""
    from damnit_dagster.ops.demo import run_demo
    if not run_demo(Path(workdir), runs=runs, port=port or _free_port(),
                    keep_running=keep_running):
        raise click.ClickException("not every run got its results in time")


def _free_port() -> int:
    from damnit_dagster.ops.backend import free_port
    return free_port()


def _instance_env() -> dict:
    from damnit_dagster.plugins.home import dagster_home
    return {"DAGSTER_HOME": str(dagster_home()),
            **{k: os.environ[k] for k in ("EXTRA_DATA_DATA_ROOT", "XFEL_DATA_ROOT")
               if k in os.environ}}


def run():
    """Entry point that never shows a traceback for an expected error."""
    main(prog_name="damnit-dagster")


if __name__ == "__main__":
    sys.exit(run())
