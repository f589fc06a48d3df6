# expect: malformed_contexts/duplicate_names.py:5: variable 'energy': another Variable has the same name 'energy' (malformed_contexts/duplicate_names.py:5)
from damnit_ctx import Variable

def make(beamline):
    @Variable(title=f"Energy {beamline}")
    def energy(run):
        return beamline
    return energy

sa1 = make("SA1")
sa2 = make("SA2")
