# expect: malformed_contexts/argument_without_source.py:4: variable 'foo': argument 'threshold' has no default and no annotation saying where its value comes from
from damnit_ctx import Variable

@Variable(title="Foo")
def foo(run, threshold):
    return threshold
