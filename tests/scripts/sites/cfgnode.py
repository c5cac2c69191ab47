"""A config node like minGPT's CfgNode (mingpt/utils.py), for the sites test project."""
from ast import literal_eval


class CfgNode:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)

    def merge_from_args(self, args):
        for arg in args:
            keyval = arg.split("=")
            key, val = keyval[0][2:], keyval[1]
            try:
                val = literal_eval(val)
            except ValueError:
                pass
            obj = self
            keys = key.split(".")
            for k in keys[:-1]:
                obj = getattr(obj, k)
            setattr(obj, keys[-1], val)
