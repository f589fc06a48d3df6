# expect: malformed_contexts/reserved_comment_any_case.py:4: variable 'Comment': the name 'Comment' is reserved for a column of the run table
from damnit_ctx import Variable

@Variable(title="My comment")
def Comment(run):
    return "hello"
