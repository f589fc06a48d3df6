# expect: malformed_contexts/data_raw_depends_on_promoted.py:12: variable 'summary_raw': is triggered by migration of raw data (data='raw'), but depends on these Variables that require proc data: image, profile
from damnit_ctx import Variable

@Variable(title="Image", data="proc")
def image(run):
    return 1

@Variable(title="Profile")
def profile(run, img: "var#image"):
    return img

@Variable(title="Summary", data="raw")
def summary_raw(run, p: "var#profile"):
    return p
