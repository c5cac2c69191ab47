"""The one reader of a user's script, shared by the stages that read it: the profiler's static
facts (``profiler/static.py``) and the codemods (``applier/codemods``). Both ask the same
functions, so "the script already does X" means the same to ``analyze`` and to ``apply``.

- ``facts``: ``ModuleFacts``, one parsed version of the script (parents, lines, qualified names).
- ``names``: the vocabulary of library objects a script may reference, by qualified name.
- ``nodes``: read-only helpers on libcst nodes (keywords, calls, the names a statement binds).
- ``info``: ``ScriptInfo``, what a script says (its optimizers, models, loaders, framework).
- ``loop``: where a plain loop keeps its backward, optimizer step and trained models.
- ``flags``: the script's options (argparse, config globals) and whether a block behind one ran.
- ``applied``: what the script already does (accumulation, autocast, GradScaler, checkpointing,
  compile, TF32, fused optimizer, DataLoader workers, early stopping, DDP/FSDP, peft), per run.
"""
