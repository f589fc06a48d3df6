"""The names a context file imports, as in DAMNIT: ``from damnit_ctx import Variable, ...``.

The top-level module ``damnit_ctx`` re-exports this one, so context files written for
DAMNIT run unchanged.
"""
from .cells import Cell
from .errors import GroupError, Skip
from .groups import Group
from .variable import RunData, Variable

__all__ = ["Variable", "Group", "Cell", "Skip", "RunData", "GroupError"]
