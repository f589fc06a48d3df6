"""What a user sees in the Dagster UI for the shipped 25-variable context
(``damnit_dagster/templates/context_25vars.py``), kept as a syrupy snapshot in
``__snapshots__/``: assets with their groups, dependencies, tags, kinds, metadata (titles,
summaries), code versions, partitions and steps; the jobs and what they select; the event sensor.

A change to any of them fails here and shows as a diff of the snapshot in review. When the
change is meant, update the snapshot and commit it with the change:
``pytest tests/defs/test_asset_graph_snapshot.py --snapshot-update``.
"""
import pytest

from damnit_dagster.defs.definitions import build_definitions
from support.paths import REPO

TEMPLATE = REPO / "damnit_dagster" / "templates" / "context_25vars.py"
#: Metadata of the context-file asset that depends on where and when it was served: the
#: folder's path, the time, the hash of the file's bytes. Only their keys are kept.
VOLATILE_METADATA = {"path", "served_since", "served_sha256"}


def asset_graph(defs) -> dict:
    """Each asset as the UI shows it, by key; nothing that depends on where or when the
    definitions were built."""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets_def = defs.resolve_assets_def(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "description": node.description,
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "tags": dict(sorted(node.tags.items())),
            "kinds": sorted(node.kinds),
            "metadata": {name: None if name in VOLATILE_METADATA else getattr(value, "value", value)
                         for name, value in sorted(node.metadata.items())},
            "code_version": node.code_version,
            "partitions": node.partitions_def.name if node.partitions_def else None,
            "materializable": node.is_materializable,
            "observable": node.is_observable,
            "step": assets_def.node_def.name if assets_def.is_executable else None,
            "pool": assets_def.node_def.pool if assets_def.is_executable else None,
        }
    return assets


def jobs(defs) -> dict:
    """The jobs a user can launch (not Dagster's implicit ``__ASSET_JOB``)."""
    return {
        job.name: {
            "tags": dict(sorted(job.tags.items())),
            "assets": sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys),
        }
        for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name)
        if not job.name.startswith("__")
    }


def sensors(defs) -> dict:
    return {
        sensor.name: {
            "description": sensor.description,
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
            "default_status": sensor.default_status.value,
            "jobs": sorted(job.name for job in sensor.jobs),
        }
        for sensor in sorted(defs.sensors or [], key=lambda s: s.name)
    }


@pytest.fixture
def defs(tmp_path, damnit_folder, mock_proposal, monkeypatch):
    folder = damnit_folder(TEMPLATE, proposal=mock_proposal.proposal).root
    monkeypatch.setenv("DAMNIT_DIR", str(folder))      # where the sensor's inbox is
    return build_definitions(folder, state_dir=tmp_path / "state")


def test_the_asset_graph_users_see_is_the_snapshot(defs, tmp_path, snapshot):
    seen = {"assets": asset_graph(defs), "jobs": jobs(defs), "sensors": sensors(defs)}
    assert "p1234/context.py" in seen["assets"] and "p1234/xgm_intensity" in seen["assets"]
    assert str(tmp_path) not in repr(seen)        # nothing of where it was built
    assert seen == snapshot
