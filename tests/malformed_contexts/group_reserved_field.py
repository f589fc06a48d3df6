# expect: malformed_contexts/group_reserved_field.py:4: error while running the context file: GroupError: Group class 'XGMDiag' cannot define 'title'
from damnit_ctx import Variable, Group

@Group
class XGMDiag:
    title: str = "XGM"

    @Variable(title="Energy")
    def energy(self, run):
        return 1

xgm = XGMDiag()
