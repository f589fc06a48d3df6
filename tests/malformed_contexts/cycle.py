# expect: malformed_contexts/cycle.py:4: variable 'foo': these Variables have cyclical dependencies, which is not allowed: foo -> bar -> foo
from damnit_ctx import Variable

@Variable(title="foo")
def foo(run, bar: "var#bar"):
    return bar

@Variable(title="bar")
def bar(run, foo: "var#foo"):
    return foo
