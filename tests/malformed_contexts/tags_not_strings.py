# expect: malformed_contexts/tags_not_strings.py:4: variable 'foo': tags=5 (must be a non-empty string or an iterable of strings)
from damnit_ctx import Variable

@Variable(title="Foo", tags=5)
def foo(run):
    return 42
