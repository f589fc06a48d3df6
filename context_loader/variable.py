"""The ``@Variable`` decorator: one function of a context file, computed for every run."""
from __future__ import annotations

import copy
import inspect
from enum import Enum


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

    def copy(self, **changes) -> "Variable":
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

        Non-string annotations are ignored, not an error. Group expansion stores the
        annotations with ``self#`` already rewritten in ``resolved_annotations``.
        """
        if self.resolved_annotations is not None:
            return dict(self.resolved_annotations)
        return {p.name: p.annotation for p in self.parameters()
                if isinstance(p.annotation, str)}

    def __repr__(self):
        return f"<Variable {self.name!r} title={self.title!r}>"
