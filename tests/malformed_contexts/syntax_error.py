# expect: malformed_contexts/syntax_error.py:5: SyntaxError: expected ':'
from damnit_ctx import Variable

@Variable(title="Foo")
def foo(run)
    return 42
