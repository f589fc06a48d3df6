"""The ``damnit-dagster`` command, mirroring DAMNIT's ``damnit`` command.

Every command acts on the DAMNIT folder in the current directory, or the one given with
``--dir``. Errors are printed as one clear line and give a non-zero exit status.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .events.inbox import EventInbox, InvalidEvent
from .settings import SETTINGS, SettingError, normalise_key, parse_setting
from .storage.database import DamnitDB
from .storage.layout import DamnitPaths, init_damnit_dir

EXAMPLE_CONTEXT = Path(__file__).parent / "templates" / "context_example.py"


class Folder:
    """The DAMNIT folder a command works on."""

    def __init__(self, path):
        self.paths = DamnitPaths(Path(path))

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
    ctx.obj = Folder(directory)


def find_proposal_dir(proposal: int) -> Path:
    """The proposal's folder under ``EXTRA_DATA_DATA_ROOT`` (default ``/gpfs/exfel/exp``)."""
    from extra_data.read_machinery import find_proposal
    try:
        return Path(find_proposal(f"p{proposal:06d}"))
    except Exception as e:
        root = os.environ.get("EXTRA_DATA_DATA_ROOT", "/gpfs/exfel/exp")
        raise click.ClickException(f"proposal {proposal} not found under {root}: {e}") from None


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
    """Announce new data of RUNS (migration: raw, calibration: proc) to the backend."""
    from .instance import inbox_path
    with folder.db() as db:
        proposal = db.proposal
    inbox = EventInbox(inbox_path())
    for run in runs:
        try:
            stored = inbox.add(kind, proposal, run, source="cli")
        except InvalidEvent as e:
            raise click.ClickException(f"run {run}: {e}") from None
        click.echo(f"{kind} of p{proposal} r{stored.run}: event {stored.id}")


def run():
    """Entry point that never shows a traceback for an expected error."""
    main(prog_name="damnit-dagster")


if __name__ == "__main__":
    sys.exit(run())
