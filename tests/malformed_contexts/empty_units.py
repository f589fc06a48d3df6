# expect: malformed_contexts/empty_units.py:4: variable 'foo': units='' (must be a non-empty string)
from damnit_ctx import Variable

@Variable(title="Foo", units="")
def foo(run):
    return 42
