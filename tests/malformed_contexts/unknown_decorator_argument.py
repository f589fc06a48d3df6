# expect: malformed_contexts/unknown_decorator_argument.py:4: error while running the context file: TypeError: Variable.__init__() got an unexpected keyword argument 'titel'
from damnit_ctx import Variable

@Variable(titel="Foo")
def foo(run):
    return 42
