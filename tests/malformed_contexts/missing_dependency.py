# expect: malformed_contexts/missing_dependency.py:8: variable 'bar': missing dependency 'var#fooo' (did you mean 'var#foo'?)
from damnit_ctx import Variable

@Variable(title="Foo")
def foo(run):
    return 42

@Variable(title="Bar")
def bar(run, value: "var#fooo"):
    return value * 2
