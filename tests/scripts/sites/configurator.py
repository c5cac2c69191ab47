# nanoGPT-style overrides, exec()'d by with_globals.py: --key=value sets the script's global key
import sys
from ast import literal_eval

for arg in sys.argv[1:]:
    key, val = arg[2:].split("=", 1)
    assert key in globals(), key
    globals()[key] = literal_eval(val)
