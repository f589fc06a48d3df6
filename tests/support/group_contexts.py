"""Executing, expanding and evaluating context-file sources with ``@Group`` for the group
tests (tests/context_loader/test_groups_*.py)."""
import fnmatch
import graphlib
import inspect
import textwrap

from context_loader.groups import expand_groups
from context_loader.variable import Variable

PRELUDE = ("from context_loader.variable import Variable\n"
           "from context_loader.groups import Group\n")


def run_code(code: str) -> dict:
    """The namespace of an executed context-file source."""
    code = textwrap.dedent(code).lstrip()
    future = ""
    if code.startswith("from __future__"):
        future, _, code = code.partition("\n")
    namespace = {}
    exec(compile(f"{future}\n{PRELUDE}{code}", "<context>", "exec"), namespace)
    return namespace


def expand(code: str) -> dict[str, Variable]:
    """The group variables of a context-file source, by name."""
    variables = expand_groups(run_code(code))
    names = [v.name for v in variables]
    assert len(names) == len(set(names))
    return {v.name: v for v in variables}


def evaluate(namespace: dict, run=None, errors=None) -> dict:
    """Results of all variables (top-level and group ones) in dependency order, with
    DAMNIT's rules: a dependency without a result gives the argument's default, or skips
    the variable; a glob dependency gives {name: value} of the results that exist.
    A variable that raises has no result; its exception goes into ``errors``."""
    variables = {v.name: v for v in namespace.values() if isinstance(v, Variable)}
    variables.update((v.name, v) for v in expand_groups(namespace))

    def matches(pattern):
        if any(c in pattern for c in "*?["):
            return [n for n in variables if fnmatch.fnmatchcase(n, pattern)]
        return [pattern]

    graph = {name: {dep for ann in var.annotations().values() if ann.startswith("var#")
                    for dep in matches(ann[4:])}
             for name, var in variables.items()}
    results = {}
    for name in graphlib.TopologicalSorter(graph).static_order():
        var = variables[name]
        kwargs, skip = {}, False
        for p in var.parameters():
            ann = var.annotations().get(p.name, "")
            if not ann.startswith("var#"):
                continue
            pattern = ann[4:]
            if any(c in pattern for c in "*?["):
                found = {n: results[n] for n in matches(pattern) if n in results}
                value = found or None
            else:
                value = results.get(pattern)
            if value is not None:
                kwargs[p.name] = value
            elif p.default is inspect.Parameter.empty:
                skip = True
        if skip:
            continue
        try:
            value = var.func(run, **kwargs)
        except Exception as e:
            if errors is None:
                raise
            errors[name] = e
            continue
        if value is not None:
            results[name] = value
    return results


#: One group ``G`` with one variable ``val``, for the naming tests.
SIMPLE_G = """
@Group
class G:
    @Variable
    def val(self, run):
        return 3
"""

#: A group ``Outer`` holding an instance of the group ``Inner``, for the naming tests.
INNER_OUTER = """
@Group
class Inner:
    @Variable
    def val(self, run):
        return 1

@Group
class Outer:
    inner: Inner

    @Variable
    def out(self, run, val: "self#inner.val"):
        return val + 1
"""
