# expect: malformed_contexts/bad_summary.py:5: variable 'foo': summary='meen' (must name a numpy function, e.g. 'mean' or 'nanmax')
import numpy as np
from damnit_ctx import Variable

@Variable(title="Foo", summary="meen")
def foo(run):
    return np.arange(10)
