"""The module DAMNIT context files import: ``from damnit_ctx import Variable, Cell, ...``.

It only re-exports :mod:`context_loader.damnit_ctx`, so context files written for DAMNIT
run unchanged.
"""
from context_loader.damnit_ctx import *  # noqa: F401,F403
from context_loader.damnit_ctx import __all__  # noqa: F401
