"""What the script already does: one function per fact, asked by the profiler's static facts
(``profiler/static.py``) and by each codemod's "already applied" check, so the report and the
rewrite never disagree about a script.

Each reader returns the places (``Found``) that show the fact, with the flag guards each sits
behind (``ccprof.script.flags``). ``applied(info, fact, options)`` folds them into one ``Applied``
for a run: on (in effect, or not known to be off), off in this run (every place sits behind a
flag the run left off), or absent.

Example::

    info = ScriptInfo(ModuleFacts(cst.parse_module(source)))
    opts = script_options(info, ["--lr", "0.1"])         # the run's argv; None: no run known
    a = applied(info, "compile", opts)
    a.on, a.line, a.behind      # False, 12, "behind `if args.compile:` (line 11), set by --compile"
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any, Callable

import libcst as cst
import libcst.matchers as m

from ccprof.script.flags import Guard, Options, describe, guards_of, keyword_guard, runs, switch_on, value_guard
from ccprof.script.info import ScriptInfo
from ccprof.script.loop import loop_of
from ccprof.script.names import NAMES, last_of
from ccprof.script.nodes import FUSED_CAPABLE, attr_chain, code_of, kwarg, kwarg_code, last_part

__all__ = ["Found", "Applied", "FACTS", "applied", "found", "NOT_LITERAL", "literal", "more_than_one",
           "FOREACH_CAPABLE", "LoaderSettings", "loader_settings"]

FOREACH_CAPABLE = ("Adadelta", "Adamax", "ASGD", "NAdam", "RAdam", "RMSprop", "Rprop")

# receivers of `.step()` that are not optimizers
_NOT_OPTIMIZER = re.compile(r"sched|(^|[._])lr", re.IGNORECASE)
# identifiers of hand-written early stopping: `if bad_epochs >= patience: break`
_PATIENCE = re.compile(
    r"patience|early_?stop|no_?improve|without_improvement|bad_(epochs|evals|steps|rounds)", re.IGNORECASE)

NOT_LITERAL: Any = object()


@dataclass(frozen=True)
class Found:
    """One place that shows a fact: its line, how to name it, the flag guards it sits behind."""
    line: int
    what: str
    guards: tuple[Guard, ...] = ()


@dataclass(frozen=True)
class Applied:
    """Whether the script already does ``fact`` in one run.

    on: a place shows it and no flag the run left off hides it (a place behind a flag whose
    value is not known counts: the fallback when no run is known); off_in_run: every place
    sits behind a flag the run left off; line, what: the place to name (an active one first);
    behind: the flag guards of that place ("" when it is not behind a flag).
    """
    fact: str
    on: bool = False
    off_in_run: bool = False
    line: int = 0
    what: str = ""
    behind: str = ""
    known: bool = True          # False: behind a flag whose value in the run is not known
    flags: tuple[str, ...] = ()  # the options that set the guards of ``behind`` (``--compile``)
    # off in this run: the run's arguments with the flag turned on (``flags.switch_on``), None
    # when ccprof cannot write them
    switch: tuple[str, ...] | None = None
    device: bool = False        # a guard of the place reads the device: on CUDA it holds, on a CPU not

    def reason(self) -> str:
        """``"`torch.compile(...)` at line 12"``, with the flag when there is one."""
        text = f"{self.what} at line {self.line}"
        if self.behind:
            state = ("off in this run" if self.off_in_run
                     else "on for the target GPU: CUDA takes this branch, a CPU run does not" if self.device and self.known
                     else "on in this run" if self.known else "on only when the run sets it")
            text += f", {self.behind} ({state})"
        return text


def applied(info: ScriptInfo, fact: str, options: Options) -> Applied:
    """The fact's ``Applied`` in the run ``options`` describe (``options.values is None``: no run)."""
    places = FACTS[fact](info, options)
    if not places:
        return Applied(fact)
    states = [(runs(p.guards, options), p) for p in places]
    for want in (True, None):
        hits = [p for s, p in states if s is want]
        if hits:
            plain = [p for p in hits if not p.guards]
            p = min(plain or hits, key=lambda p: p.line)
            return Applied(fact, on=True, line=p.line, what=p.what,
                           behind=describe(p.guards) if p.guards else "", known=want is True, flags=_flags(p),
                           device=any(g.device for g in p.guards))
    p = min(places, key=lambda p: p.line)
    switch = switch_on(info, p.guards, options.argv)
    return Applied(fact, off_in_run=True, line=p.line, what=p.what, behind=describe(p.guards), flags=_flags(p),
                   switch=None if switch is None else tuple(switch))


def _flags(place: Found) -> tuple[str, ...]:
    return tuple(dict.fromkeys(f for g in place.guards for f in g.flags))


def found(info: ScriptInfo, fact: str, options: Options) -> list[Found]:
    """Every place that shows ``fact``, in source order."""
    return sorted(FACTS[fact](info, options), key=lambda p: p.line)


# --------------------------------------------------------------------------- literals


def literal(node: cst.BaseExpression) -> Any:
    """The Python value of a literal expression, or NOT_LITERAL."""
    try:
        return ast.literal_eval(code_of(node).strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return NOT_LITERAL


def _on(value: Any) -> bool:
    """A literal truthy value; an expression is not."""
    return value is not NOT_LITERAL and bool(value)


def more_than_one(value: Any) -> bool:
    """An accumulation count: an expression counts (it is there to be set above 1)."""
    if value is NOT_LITERAL:
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 1


def _sixteen_bit(value: Any) -> bool:
    """Lightning's ``precision=``: 16, "16-mixed", "bf16-mixed", "bf16-true" ..."""
    return value is not NOT_LITERAL and "16" in str(value)


def _sharded(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("fsdp", "deepspeed"))


# --------------------------------------------------------------------------- helpers


def _in_import(info: ScriptInfo, node: cst.CSTNode) -> bool:
    return any(isinstance(a, (cst.Import, cst.ImportFrom)) for a in info.ancestors(node))


def _imported_names(info: ScriptInfo) -> set[str]:
    """Names the script binds by importing (``T`` in ``import torch as T``, ``torch`` in
    ``import torch.nn``, ``ac`` in ``from torch.cuda.amp import autocast as ac``)."""
    out: set[str] = set()
    for imp in [*info.facts.of_type(cst.Import), *info.facts.of_type(cst.ImportFrom)]:
        if isinstance(imp.names, cst.ImportStar):
            continue
        for alias in imp.names:
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                out.add(alias.asname.name.value)
            else:
                out.add(code_of(alias.name).strip().split(".")[0])
    return out


def _root(node: cst.CSTNode) -> str:
    while isinstance(node, cst.Attribute):
        node = node.value
    return node.value if isinstance(node, cst.Name) else ""


def _references(info: ScriptInfo, kind: str) -> list[cst.CSTNode]:
    """Names and attributes that refer to a ``kind`` of library object, imports aside. Only a
    chain that starts at an imported name (or ends in one of the kind's names: a class of the
    script's own) can, so the others are not resolved."""
    name = NAMES[kind]
    if not info.facts.mentions(*name.lasts):
        return []
    imported = _imported_names(info)
    out = []
    for node in [*info.facts.of_type(cst.Name), *info.facts.of_type(cst.Attribute)]:
        last = node.value if isinstance(node, cst.Name) else node.attr.value
        if _root(node) not in imported and last not in name.lasts:
            continue
        parent = info.parent(node)
        if isinstance(parent, cst.Attribute) and parent.attr is node:
            continue                                    # the attribute itself is looked at
        if any(name.match(q) for q in info.qnames(node)) and not _in_import(info, node):
            out.append(node)
    return out


def _place(info: ScriptInfo, node: cst.CSTNode, options: Options, what: str | None = None,
           extra: tuple[Guard | None, ...] = ()) -> Found:
    guards = guards_of(info, node, options) + tuple(g for g in extra if g is not None)
    if what is None:
        what = f"`{code_of(node).strip()}(...)`" if not isinstance(node, cst.Call) else \
            f"`{code_of(node.func).strip()}(...)`"
    return Found(info.line(node), what, guards)


def _reference_places(info: ScriptInfo, kind: str, options: Options, enabled: bool = False) -> list[Found]:
    """A place per reference; ``enabled``: a call's ``enabled=`` keyword is a guard too."""
    out = []
    for node in _references(info, kind):
        call = info.parent(node)
        extra: tuple[Guard | None, ...] = ()
        if enabled and isinstance(call, cst.Call) and call.func is node:
            extra = (keyword_guard(info, call, "enabled", options),)
        out.append(_place(info, call if isinstance(call, cst.Call) and call.func is node else node, options,
                          f"`{code_of(node).strip()}`" if not (isinstance(call, cst.Call) and call.func is node)
                          else None, extra))
    return out


def _keyword_places(info: ScriptInfo, kind: str, rules: dict[str, Callable[[Any], bool]],
                    options: Options, values: dict[str, tuple[Any, ...]] | None = None) -> list[Found]:
    """Configuration calls (``TrainingArguments(bf16=True)``) whose keyword passes its rule; a
    keyword set from an option (``Accelerator(mixed_precision=args.mixed_precision)``) is a place
    behind that option, on when the run's value passes the rule. ``values``: per keyword, values
    that turn it on (what ``switch_on`` tries on the command line)."""
    out = []
    for call in info.calls_of(kind):
        for key, rule in rules.items():
            arg = kwarg(call, key)
            if arg is None:
                continue
            value = literal(arg.value)
            what = f"`{key}={code_of(arg.value).strip()}`"
            if value is not NOT_LITERAL:
                if rule(value):
                    out.append(_place(info, arg, options, what))
                continue
            guard = value_guard(info, arg.value, options, _lenient(rule), key, (values or {}).get(key, ()))
            if guard is not None and guard.flags:
                out.append(_place(info, arg, options, what, (guard,)))
    return out


def _lenient(rule: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """``rule`` that says False rather than raising on a value of another type."""
    def check(value: Any) -> bool:
        try:
            return bool(rule(value))
        except Exception:
            return False
    return check


# --------------------------------------------------------------------------- the facts


def _autocast(info: ScriptInfo, options: Options) -> list[Found]:
    return (_reference_places(info, "autocast", options, enabled=True)
            + _keyword_places(info, "training_arguments", {"fp16": _on, "bf16": _on}, options)
            + _keyword_places(info, "lightning_trainer", {"precision": _sixteen_bit}, options)
            + _keyword_places(info, "accelerator", {"mixed_precision": lambda v: v in ("fp16", "bf16", "fp8")},
                              options, {"mixed_precision": ("bf16", "fp16")}))


def _grad_scaler(info: ScriptInfo, options: Options) -> list[Found]:
    return (_reference_places(info, "grad_scaler", options, enabled=True)
            + _keyword_places(info, "training_arguments", {"fp16": _on}, options)
            + _keyword_places(info, "lightning_trainer",
                              {"precision": lambda v: v in (16, "16", "16-mixed")}, options)
            + _keyword_places(info, "accelerator", {"mixed_precision": lambda v: v == "fp16"}, options))


def _checkpointing(info: ScriptInfo, options: Options) -> list[Found]:
    return (_reference_places(info, "checkpointing", options)
            + [_place(info, c, options) for c in info.method_calls("gradient_checkpointing_enable")]
            + _keyword_places(info, "training_arguments", {"gradient_checkpointing": _on}, options))


def _compile(info: ScriptInfo, options: Options) -> list[Found]:
    own = [c for c in info.method_calls("compile")
           if not any(q.source.name == "IMPORT" for q in info.facts.qualified(c.func))]   # not re.compile
    return (_reference_places(info, "compile", options) + [_place(info, c, options) for c in own]
            + _keyword_places(info, "training_arguments", {"torch_compile": _on,
                                                           "torch_compile_backend": lambda v: v is not None,
                                                           "torch_compile_mode": lambda v: v is not None}, options))


def _tf32(info: ScriptInfo, options: Options) -> list[Found]:
    out = []
    for call in info.calls_to(("torch.set_float32_matmul_precision",)):
        if call.args and literal(call.args[0].value) in ("high", "medium"):
            out.append(_place(info, call, options, f"`{code_of(call).strip()}`"))
    for n in info.assigns():
        for t in n.targets:
            if isinstance(t.target, cst.Attribute) and t.target.attr.value == "allow_tf32" and literal(n.value) is True:
                out.append(_place(info, n, options, f"`{code_of(n).strip()}`"))
    return out + _keyword_places(info, "training_arguments", {"tf32": _on}, options)


def _is_fused(call: cst.Call) -> bool:
    return any(kwarg_code(call, k) not in (None, "False", "None") for k in ("fused", "foreach"))


def _fused_optimizer(info: ScriptInfo, options: Options) -> list[Found]:
    """Every torch.optim optimizer that has a fused or foreach kernel uses it (at least one does)."""
    calls = info.optimizer_calls()
    if not calls:
        return _keyword_places(info, "training_arguments", {"optim": lambda v: isinstance(v, str) and "fused" in v},
                               options) if info.kind == "hf_trainer" else []
    capable = FUSED_CAPABLE + FOREACH_CAPABLE
    if any(not _is_fused(c) and info.optimizer_class(c) in capable for c in calls):
        return []
    out = []
    for c in calls:
        if _is_fused(c):
            key = "fused" if kwarg(c, "fused") is not None else "foreach"
            guard = keyword_guard(info, c, key, options)
            if key == "foreach" and guard is not None and guard.device:
                guard = None            # foreach is CUDA's default: a device test there changes nothing on the GPU
            out.append(_place(info, c, options, f"`{info.optimizer_class(c)}(..., {key}={kwarg_code(c, key)})`",
                              (guard,)))
    return out


@dataclass(frozen=True)
class LoaderSettings:
    """One ``DataLoader(...)`` call and what it sets: workers (code or None), pin_memory and
    persistent_workers present, positional arguments counted."""
    call: cst.Call
    workers: str | None
    pinned: bool
    persistent: bool
    positional: int


def loader_settings(info: ScriptInfo) -> list[LoaderSettings]:
    """The DataLoader calls a workers tweak may change (loaders over an IterableDataset class of
    the script are left out: each worker would replay the whole stream)."""
    iterable = {cd.name.value for cd in info.class_defs
                if any(last_part(q) == "IterableDataset" for b in cd.bases for q in info.qnames(b.value))}
    out = []
    for call in info.calls_of("dataloader"):
        dataset = call.args[0].value if call.args and call.args[0].keyword is None else (
            kwarg(call, "dataset").value if kwarg(call, "dataset") is not None else None)
        if dataset is not None and isinstance(dataset, cst.Call) and code_of(dataset.func).strip() in iterable:
            continue
        positional = sum(1 for a in call.args if a.keyword is None)
        workers = kwarg_code(call, "num_workers")
        if positional >= 6:
            workers = code_of(call.args[5].value).strip()
        out.append(LoaderSettings(call, workers, kwarg(call, "pin_memory") is not None or positional >= 8,
                                  kwarg(call, "persistent_workers") is not None, positional))
    return out


def _dataloader(info: ScriptInfo, options: Options) -> list[Found]:
    """Every DataLoader loads in workers, with pin_memory and persistent_workers set."""
    loaders = loader_settings(info)
    if not loaders:
        return _keyword_places(info, "training_arguments",
                               {"dataloader_num_workers": lambda v: v is NOT_LITERAL or bool(v)}, options) \
            if info.kind == "hf_trainer" else []
    if any(s.workers in (None, "0") or not s.pinned or not s.persistent for s in loaders):
        return []
    out = []
    for s in loaders:
        arg = kwarg(s.call, "num_workers")
        guard = value_guard(info, arg.value, options, keyword="num_workers") if arg is not None else None
        out.append(_place(info, s.call, options, f"`DataLoader(..., num_workers={s.workers})`", (guard,)))
    return out


def _early_stopping(info: ScriptInfo, options: Options) -> list[Found]:
    out = _reference_places(info, "early_stopping", options)
    for node in [*info.facts.of_type(cst.If), *info.facts.of_type(cst.While)]:
        if not any(_PATIENCE.search(n.value) for n in m.findall(node.test, m.Name())):
            continue
        if isinstance(node, cst.If) and not m.findall(node.body, m.Break() | m.Return() | m.Raise()):
            continue                # a patience test that stops nothing (a scheduler's, a log line)
        own = value_guard(info, node.test, options)     # `if args.early_stop and bad >= patience:`
        out.append(_place(info, node, options, f"`{'if' if isinstance(node, cst.If) else 'while'} "
                                               f"{code_of(node.test).strip()}:`",
                          (own,) if own is not None and own.flags else ()))
    return out


def _accumulation(info: ScriptInfo, options: Options) -> list[Found]:
    """A real accumulation pattern, never a variable's name: the optimizer steps under a modulo or
    counter condition; backward runs in a loop of its own with the step after it; or the HF,
    Lightning or Accelerate setting is above 1."""
    out = _keyword_places(info, "training_arguments", {"gradient_accumulation_steps": more_than_one}, options)
    out += _keyword_places(info, "lightning_trainer", {"accumulate_grad_batches": more_than_one}, options)
    out += _keyword_places(info, "accelerator", {"gradient_accumulation_steps": more_than_one}, options)
    steps = [c for c in info.method_calls("step") if not _NOT_OPTIMIZER.search(code_of(c.func.value))]  # type: ignore[union-attr]
    backwards = info.method_calls("backward")
    if not steps or not backwards:
        return out
    for call in steps:
        for anc in info.ancestors(call):
            if isinstance(anc, (cst.FunctionDef, cst.ClassDef)):
                break
            if isinstance(anc, (cst.For, cst.While)):
                break
            if isinstance(anc, cst.If) and _counts_micro_batches(info, anc):
                out.append(_place(info, call, options, f"`{code_of(call).strip()}` under "
                                                       f"`if {code_of(anc.test).strip()}:`"))
                break
    step_ids = {id(c) for c in steps}
    for loop in {id(lp): lp for lp in (loop_of(info, b) for b in backwards) if lp is not None}.values():
        if any(id(c) in step_ids for c in info.calls_in(loop)):
            continue
        if _step_follows(info, loop, step_ids):
            out.append(_place(info, loop, options, f"`{'for' if isinstance(loop, cst.For) else 'while'} "
                                                   "...: backward()` with the optimizer step after it"))
    return out


def _counts_micro_batches(info: ScriptInfo, node: cst.If) -> bool:
    """``if (i + 1) % k == 0:``, or ``if micro == k:`` whose body resets the counter ``micro = 0``."""
    if m.findall(node.test, m.BinaryOperation(operator=m.Modulo())):
        return True
    read = {n.value for n in m.findall(node.test, m.Name())}
    for assign in m.findall(node.body, m.Assign(targets=[m.AssignTarget(target=m.Name())], value=m.Integer("0"))):
        if assign.targets[0].target.value in read:
            return True
    return False


def _step_follows(info: ScriptInfo, loop: cst.CSTNode, step_ids: set[int]) -> bool:
    """An optimizer step in a statement after ``loop`` in the same block."""
    block = info.block_of(loop)
    if block is None:
        return False
    body = list(block.body)
    after = body[body.index(loop) + 1:] if loop in body else []
    return any(id(c) in step_ids for stmt in after for c in info.calls_in(stmt))


def _ddp(info: ScriptInfo, options: Options) -> list[Found]:
    return (_reference_places(info, "ddp", options)
            + _keyword_places(info, "lightning_trainer",
                              {"strategy": lambda v: isinstance(v, str) and (v == "ddp" or v.startswith("ddp_"))},
                              options))


def _fsdp(info: ScriptInfo, options: Options) -> list[Found]:
    return (_reference_places(info, "fsdp", options)
            + _keyword_places(info, "lightning_trainer", {"strategy": _sharded}, options)
            + _keyword_places(info, "training_arguments",
                              {"fsdp": lambda v: v is NOT_LITERAL or (bool(v) and v not in ("", []))}, options))


_FLOAT64 = ("float64", "double")        # torch.float64 and its alias torch.double


def _is_float64(node: cst.BaseExpression) -> bool:
    chain = attr_chain(node) or ""
    return "." in chain and chain.rsplit(".", 1)[-1] in _FLOAT64


def _float64(info: ScriptInfo, options: Options) -> list[Found]:
    """What makes the model float64: ``torch.set_default_dtype(torch.float64)``, ``model.double()``,
    ``.to(torch.float64)`` / ``.to(dtype=torch.double)``, ``dtype=torch.float64`` given to a torch.nn
    layer; without any of those, tensors created with ``dtype=torch.float64``."""
    if not info.facts.mentions("double", "float64"):
        return []
    model: list[Found] = []
    tensors: list[Found] = []
    for call in info.calls:
        func = call.func
        name = func.attr.value if isinstance(func, cst.Attribute) else func.value if isinstance(func, cst.Name) else ""
        what = f"`{code_of(call).strip()}`"
        if name == "set_default_dtype" and call.args and _is_float64(call.args[0].value):
            model.append(_place(info, call, options, what))
        elif name == "double" and isinstance(func, cst.Attribute) and not call.args:
            model.append(_place(info, call, options, what))
        elif name in ("to", "type") and isinstance(func, cst.Attribute) and any(_is_float64(a.value) for a in call.args):
            model.append(_place(info, call, options, what))
        elif (arg := kwarg(call, "dtype")) is not None and _is_float64(arg.value):
            layer = any(q.startswith("torch.nn.") for q in info.qnames(func))
            (model if layer else tensors).append(_place(info, call, options, what if len(what) < 80 else
                                                        f"`{code_of(func).strip()}(..., dtype={code_of(arg.value).strip()})`"))
    return model or tensors


def _peft(info: ScriptInfo, options: Options) -> list[Found]:
    return (_reference_places(info, "peft", options)
            + _keyword_places(info, "hf_trainer", {"peft_config": lambda v: v is not None}, options))


# `X.from_pretrained(...)` loads weights unless X is a tokenizer, config or processor.
_NOT_WEIGHTS = re.compile(r"(Tokenizer|Config|Processor|FeatureExtractor|Extractor)\w*$")


def _from_pretrained(info: ScriptInfo, options: Options) -> list[Found]:
    """``Model.from_pretrained(...)`` calls that load weights (Hugging Face, or nanoGPT's own
    ``GPT.from_pretrained``), with the flags they sit behind (``if args.model == "gpt2":``)."""
    out = []
    for call in info.method_calls("from_pretrained"):
        receiver = call.func.value if isinstance(call.func, cst.Attribute) else call.func
        names = [code_of(receiver).strip(), *(last_of(q) for q in info.qnames(receiver))]
        if not any(_NOT_WEIGHTS.search(n) for n in names):
            out.append(_place(info, call, options))
    return out


FACTS: dict[str, Callable[[ScriptInfo, Options], list[Found]]] = {
    "autocast": _autocast, "grad_scaler": _grad_scaler, "checkpointing": _checkpointing,
    "accumulation": _accumulation, "early_stopping": _early_stopping, "ddp": _ddp, "fsdp": _fsdp,
    "compile": _compile, "tf32": _tf32, "fused_optimizer": _fused_optimizer, "dataloader": _dataloader,
    "peft": _peft, "from_pretrained": _from_pretrained, "float64": _float64,
}
