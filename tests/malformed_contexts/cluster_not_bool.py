# expect: malformed_contexts/cluster_not_bool.py:4: variable 'foo': cluster='yes' (must be True or False)
from damnit_ctx import Variable

@Variable(title="Foo", cluster="yes")
def foo(run):
    return 42
