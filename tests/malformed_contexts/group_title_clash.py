# expect: malformed_contexts/group_title_clash.py:10: variable 'xgm.energy': these Variables have duplicate titles between them: energy, xgm.energy (title 'XGM/Energy')
from damnit_ctx import Variable, Group

@Variable(title="XGM/Energy")
def energy(run):
    return 1

@Group(title="XGM")
class XGMDiag:
    @Variable(title="Energy")
    def energy(self, run):
        return 2

xgm = XGMDiag()
