# expect: malformed_contexts/lambda_name.py:4: variable '<lambda>': the variable name '<lambda>' is not a valid Python identifier or dotted name
from damnit_ctx import Variable

double = Variable(title="Double")(lambda run: 2)
