# expect: malformed_contexts/raw_depends_on_proc.py:8: variable 'bar': is triggered by migration of raw data (data='raw'), but depends on these Variables that require proc data: foo
from damnit_ctx import Variable

@Variable(title="foo", data="proc")
def foo(run):
    return 42

@Variable(title="bar", data="raw")
def bar(run, foo: "var#foo"):
    return foo
