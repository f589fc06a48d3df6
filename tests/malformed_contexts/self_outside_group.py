# expect: malformed_contexts/self_outside_group.py:8: variable 'bar': argument 'f' uses 'self#foo', but 'self#' dependencies only work in Variables of a @Group; use 'var#<name>'
from damnit_ctx import Variable

@Variable(title="foo")
def foo(run):
    return 1

@Variable(title="bar")
def bar(run, f: "self#foo"):
    return f
