# expect: malformed_contexts/unknown_annotation_prefix.py:4: variable 'foo': argument 'x' has an unknown annotation 'input#x' (use 'var#<name>', 'meta#<field>' or 'mymdc#<field>')
from damnit_ctx import Variable

@Variable(title="foo")
def foo(run, x: "input#x"):
    return x
