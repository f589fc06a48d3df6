# expect: malformed_contexts/empty_dependency.py:4: variable 'foo': argument 'x' has an empty dependency: 'var#'
from damnit_ctx import Variable

@Variable(title="foo")
def foo(run, x: "var#"):
    return x
