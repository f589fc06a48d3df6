# expect: malformed_contexts/description_not_string.py:4: variable 'foo': description=['pulse', 'energy'] (must be a string)
from damnit_ctx import Variable

@Variable(title="Foo", description=["pulse", "energy"])
def foo(run):
    return 42
