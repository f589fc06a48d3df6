# expect: malformed_contexts/duplicate_titles.py:8: variable 'bar': these Variables have duplicate titles between them: foo, bar (title 'Foo')
from damnit_ctx import Variable

@Variable(title="Foo")
def foo(run):
    return 42

@Variable(title="Foo")
def bar(run):
    return 43
