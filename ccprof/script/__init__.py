"""What ccprof reads in a user's script, shared by the stages that read it: the profiler's
static facts (``profiler/static.py``) and the codemods (``applier/codemods``).

- ``names``: the one vocabulary of the library objects a script may reference, matched by
  libcst's qualified names (``torch.amp.autocast``, ``transformers.Trainer`` ...).
"""
