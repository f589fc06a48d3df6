"""The IO manager of a folder's variables: a stored value read back from its run's file.

``Definitions.load_asset_value(key, partition_key=run)`` (in a notebook, or Dagster's
own tooling) returns what ``damnit.api``'s ``read()`` gives for that variable and run.
Values are written by the steps themselves, all of a run's variables in one locked,
atomic write (``storage.writer``); steps yield events, never outputs, so this IO manager
is never asked to store one.
"""
from __future__ import annotations

import dagster as dg

from context_loader.stored import read_value
from damnit_dagster.storage.layout import DamnitPaths


class DamnitIOManager(dg.ConfigurableIOManager):
    """Reads variables from the run files of the DAMNIT folder ``path``."""

    path: str

    def load_input(self, context: dg.InputContext):
        """The stored value of the asset (a variable) for the partition (a run)."""
        key = context.asset_key
        if not context.has_asset_partitions:
            raise dg.Failure(f"{key.to_user_string()}: a variable is read for one run: "
                             "give partition_key=<run number>")
        run = int(context.asset_partition_key)
        proposal = int(key.path[0].lstrip("p"))
        name = ".".join(key.path[1:])
        run_file = DamnitPaths(self.path).run_file(proposal, run)
        try:
            return read_value(run_file, name)
        except (KeyError, OSError) as e:
            raise dg.Failure(f"no stored value of {name!r} for run {run}: {e}") from None

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        """Never called: steps store each run's values in one write and yield events."""
        raise dg.Failure(f"{context.asset_key.to_user_string()}: variables are stored by "
                         "their step (one write per run), not through outputs")
