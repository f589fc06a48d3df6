# expect: malformed_contexts/transient_not_bool.py:4: variable 'foo': transient='no' (must be True or False)
from damnit_ctx import Variable

@Variable(title="Foo", transient="no")
def foo(run):
    return 42
