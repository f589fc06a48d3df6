"""Described variables of a context file as the backend sorts them, without Dagster:
which are saved (assets), their saved parents, the execution bucket they run in, and the
data a set of them needs. A command uses these before it imports Dagster."""
from __future__ import annotations

#: Execution buckets: the non-cluster variables, and the ``cluster=True`` ones.
LOCAL, CLUSTER = "local", "cluster"


def bucket_of(var: dict) -> str:
    """The execution bucket of a described variable."""
    return CLUSTER if var.get("cluster") else LOCAL


def saved_variables(variables: list[dict]) -> list[dict]:
    """The variables that are assets: every non-transient one, in evaluation order."""
    return [v for v in variables if not v.get("transient")]


def lineage(variables: list[dict]) -> dict[str, list[str]]:
    """Asset parents of each saved variable: its dependencies, looking through
    transient variables to the saved variables they depend on."""
    by_name = {v["name"]: v for v in variables}

    def parents(name, seen):
        out = []
        for dep in by_name[name]["deps"]:
            if dep in seen or dep not in by_name:
                continue
            seen.add(dep)
            out.extend(parents(dep, seen) if by_name[dep].get("transient") else [dep])
        return out

    return {v["name"]: sorted(set(parents(v["name"], set())))
            for v in saved_variables(variables)}


def trigger_for(variables: list[dict]) -> str:
    """The data a step needs for these variables: raw, proc, or all (both)."""
    kinds = {v["data"] for v in variables}
    return kinds.pop() if len(kinds) == 1 else "all"
