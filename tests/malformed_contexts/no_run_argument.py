# expect: malformed_contexts/no_run_argument.py:4: variable 'foo': the function must take the run as its first argument, e.g. 'def f(run):'
from damnit_ctx import Variable

@Variable(title="Foo")
def foo():
    return 42
