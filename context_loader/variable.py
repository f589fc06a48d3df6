"""The ``@Variable`` decorator: one function of a context file, computed for every run."""
from __future__ import annotations

import copy
import inspect
from collections.abc import Iterable
from enum import Enum

import numpy as np

from .mymdc import MYMDC_FIELDS

#: Names a variable may not have: the columns DAMNIT's ``runs`` table already has
#: (compared case-insensitively, like SQLite column names).
RESERVED_NAMES = ("proposal", "run", "start_time", "added_at", "comment")

#: What ``meta#<field>`` may ask for.
META_FIELDS = ("run_number", "proposal", "proposal_path")


class RunData(Enum):
    """Which data of a run a variable needs: raw (migration) or proc (calibration)."""

    RAW = "raw"
    PROC = "proc"
    ALL = "all"


class Variable:
    """Decorate a function ``f(run, ...)`` to compute it for every run.

    Accepted forms, as in DAMNIT: ``@Variable``, ``@Variable()``, ``@Variable("Title")`` and
    ``@Variable(title=..., description=..., summary=..., data=..., cluster=..., tags=...,
    transient=..., units=...)``. Arguments are checked when the context file is loaded
    (:meth:`check`), so that every problem of a file is reported at once.
    """

    def __init__(self, title=None, description=None, summary=None, data=None,
                 cluster=False, tags=None, transient=False, units=None):
        func = None
        if callable(title) and not isinstance(title, str):  # bare @Variable
            func, title = title, None
        self.title = title
        self.description = description
        self.summary = summary
        self._data = data          # as given; None means "raw unless promoted"
        self.cluster = cluster
        self.tags = (tags,) if isinstance(tags, str) else tags
        self.transient = transient
        self.units = units
        self.func = None
        self.name = None
        self.resolved_annotations = None  # set by group expansion (self# -> var#)
        if func is not None:
            self(func)

    def __call__(self, func):
        self.func = func
        self.name = func.__name__
        if self.title is None:
            self.title = self.name
        if self.description is None:
            self.description = inspect.getdoc(func)
        return self

    @property
    def data(self) -> RunData:
        """The trigger of this variable; ``RunData.RAW`` unless ``data="proc"``."""
        return RunData.RAW if self._data is None else RunData(self._data)

    def copy(self, **changes) -> Variable:
        """A shallow copy with some attributes changed (used by group expansion)."""
        new = copy.copy(self)
        for key, value in changes.items():
            setattr(new, key, value)
        return new

    def parameters(self) -> list[inspect.Parameter]:
        """The function's parameters after ``run`` (and ``self`` for group methods)."""
        params = list(inspect.signature(self.func).parameters.values())
        return params[1:]

    def annotations(self) -> dict[str, str]:
        """Map argument name -> annotation string (``"var#x"``, ``"meta#run_number"``, ...).

        Non-string annotations are ignored, not an error; under ``from __future__ import
        annotations`` a quoted ``"var#x"`` arrives as ``"'var#x'"`` and is unquoted. Group
        expansion stores the annotations with ``self#`` already rewritten in
        ``resolved_annotations``.
        """
        if self.resolved_annotations is not None:
            return dict(self.resolved_annotations)
        return {p.name: _unquote(p.annotation) for p in self.parameters()
                if isinstance(p.annotation, str)}

    def location(self) -> tuple[str | None, int | None]:
        """``(file, line)`` where the function is defined (its first decorator line)."""
        code = getattr(getattr(self.func, "__func__", self.func), "__code__", None)
        if code is None:
            return None, None
        return code.co_filename, code.co_firstlineno

    def check(self) -> list[str]:
        """Problems with this Variable's name, arguments and signature (empty if none).

        Texts follow DAMNIT 0.4.0's ``Variable.check`` without repeating the name; the
        loader prefixes each with ``<file>:<line>: variable '<name>': ``.
        """
        problems = []
        name = self.name
        if not all(part.isidentifier() for part in name.split(".")):
            problems.append(f"the variable name {name!r} is not a valid Python identifier "
                            "or dotted name")
        elif name.lower() in RESERVED_NAMES:
            problems.append(f"the name {name!r} is reserved for a column of the run table "
                            f"({', '.join(RESERVED_NAMES)}); rename the function")
        if not isinstance(self.title, str) or not self.title.strip():
            problems.append(f"title={self.title!r} (must be a non-empty string)")
        if self.description is not None and not isinstance(self.description, str):
            problems.append(f"description={self.description!r} (must be a string)")
        if not _valid_data(self._data):
            problems.append(f"data={self._data!r} (can be 'raw'/'proc')")
        if self.tags is not None and not (
                isinstance(self.tags, Iterable)
                and all(isinstance(t, str) and t != "" for t in self.tags)):
            problems.append(f"tags={self.tags!r} (must be a non-empty string or an iterable "
                            "of strings)")
        if self.units is not None and (not isinstance(self.units, str) or self.units == ""):
            problems.append(f"units={self.units!r} (must be a non-empty string)")
        if self.summary is not None and not (
                isinstance(self.summary, str) and callable(getattr(np, self.summary, None))):
            problems.append(f"summary={self.summary!r} (must name a numpy function, "
                            "e.g. 'mean' or 'nanmax')")
        for flag in ("cluster", "transient"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                problems.append(f"{flag}={getattr(self, flag)!r} (must be True or False)")
        problems += self._check_signature()
        return problems

    def _check_signature(self) -> list[str]:
        try:
            params = list(inspect.signature(self.func).parameters.values())
        except (TypeError, ValueError) as e:
            return [f"cannot read the function's signature ({e})"]
        positional = (inspect.Parameter.POSITIONAL_ONLY,
                      inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        if not params or params[0].kind not in positional:
            return ["the function must take the run as its first argument, "
                    "e.g. 'def f(run):'"]
        problems = []
        annotations = self.annotations()
        for p in params[1:]:
            if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                continue
            ann = annotations.get(p.name)
            if ann is None or "#" not in ann:  # no annotation, or a plain type hint
                if p.default is inspect.Parameter.empty:
                    problems.append(
                        f"argument {p.name!r} has no default and no annotation saying where "
                        "its value comes from ('var#<name>', 'meta#run_number', "
                        "'mymdc#sample_name', ...)")
                continue
            problem = _check_annotation(p.name, ann, self.resolved_annotations is not None)
            if problem:
                problems.append(problem)
        return problems

    def __repr__(self):
        return f"<Variable {self.name!r} title={self.title!r}>"


def _unquote(annotation: str) -> str:
    if len(annotation) >= 2 and annotation[0] == annotation[-1] and annotation[0] in "'\"":
        return annotation[1:-1]
    return annotation


def _valid_data(data) -> bool:
    """``data=`` may be None, "raw" or "proc" (or the RunData members)."""
    return data is None or (isinstance(data, (str, RunData)) and data in (
        "raw", "proc", RunData.RAW, RunData.PROC))


def _check_annotation(arg: str, ann: str, in_group: bool) -> str | None:
    """The problem with one argument's string annotation, or None."""
    prefix, _, rest = ann.partition("#")
    if prefix == "var":
        return None if rest else f"argument {arg!r} has an empty dependency: {ann!r}"
    if prefix == "meta":
        if rest not in META_FIELDS:
            return (f"argument {arg!r} has an invalid meta dependency: {rest!r} (can be "
                    f"{', '.join(META_FIELDS)})")
        return None
    if prefix == "mymdc":
        if rest not in MYMDC_FIELDS:
            return (f"argument {arg!r} has an invalid MyMdC dependency: {rest!r} (can be "
                    f"{', '.join(MYMDC_FIELDS)})")
        return None
    if prefix == "param":
        return None if rest else f"argument {arg!r} has an empty parameter name: {ann!r}"
    if prefix == "self" and not in_group:
        return (f"argument {arg!r} uses {ann!r}, but 'self#' dependencies only work in "
                "Variables of a @Group; use 'var#<name>'")
    return (f"argument {arg!r} has an unknown annotation {ann!r} (use 'var#<name>', "
            "'meta#<field>' or 'mymdc#<field>')")
