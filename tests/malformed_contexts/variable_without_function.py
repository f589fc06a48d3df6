# expect: malformed_contexts/variable_without_function.py: 'pending' is a Variable(...) that decorates no function
from damnit_ctx import Variable

pending = Variable(title="Pending")

@Variable(title="Foo")
def foo(run):
    return 42
