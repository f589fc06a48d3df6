# expect: malformed_contexts/self_dependency.py:4: variable 'foo': these Variables have cyclical dependencies, which is not allowed: foo -> foo
from damnit_ctx import Variable

@Variable(title="foo")
def foo(run, previous: "var#foo"):
    return previous + 1
