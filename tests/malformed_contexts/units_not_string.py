# expect: malformed_contexts/units_not_string.py:4: variable 'foo': units=1000 (must be a non-empty string)
from damnit_ctx import Variable

@Variable(title="Foo", units=1000)
def foo(run):
    return 42
