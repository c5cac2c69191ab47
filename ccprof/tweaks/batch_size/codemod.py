"""batch_size: set the training batch size to ``options["batch_size"]`` under the advice's contract.

Where the script says it: the ``--batch-size`` argparse default, the shuffled DataLoader's
``batch_size=`` literal or a module-level ``batch_size = N``; ``per_device_train_batch_size``
for the HF Trainer. With the batch k times as large it writes the same contract the advice
priced (``contract.py``): the learning rate scaled by the rule (the optimizer's ``lr=`` literal,
the module-level name or ``--lr`` default it reads, ``learning_rate`` of ``TrainingArguments``);
with ``keep="samples"`` every limit and schedule length in steps divided by k (``max_iters``,
``warmup_iters``, ``lr_decay_iters``, ``max_steps``, a ``get_*_schedule_with_warmup`` literal), epochs
kept; with ``keep="steps"`` the epochs multiplied by k. What it cannot find as a literal or an
argparse default it names in its note, with the value to set.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

import libcst as cst

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import AlreadyApplied, Skip, TweakCodemod
from ccprof.applier.codemods._cst import Edits, code_of, kwarg, kwarg_code, parse_expr, set_kwarg
from ccprof.profiler.run_size import EPOCH_NAMES, STEP_NAMES
from ccprof.script.info import ScriptInfo
from ccprof.script.loop import step_stmts
from ccprof.tweaks.batch_size.contract import describe_rule, epochs_after, lr_factor, lr_rule_for, steps_after

__all__ = ["BatchSize"]

FLAGS = ("--batch-size", "--batch_size", "--bs", "--train-batch-size", "--train_batch_size")
LR_NAMES = ("lr", "learning_rate", "base_lr", "max_lr", "min_lr")
SCHEDULE_NAMES = ("warmup_iters", "warmup_steps", "num_warmup_steps", "lr_warmup_steps", "lr_decay_iters",
                  "decay_iters", "decay_steps", "num_training_steps")
# transformers.TrainingArguments defaults: per_device_train_batch_size=8, learning_rate=5e-5,
# num_train_epochs=3.0, max_steps=-1 (https://huggingface.co/docs/transformers/main_classes/trainer)
HF_BATCH, HF_LR, HF_EPOCHS = 8, 5e-5, 3.0


@dataclass
class _Site:
    """A setting the rewrite can change: the node holding it, the keyword (None: an assignment's
    value), its literal value (None: not a literal) and where it is, for the note."""
    node: cst.CSTNode
    key: str | None
    value: float | None
    where: str
    name: str = ""                      # the setting's name: an argparse dest, a variable, a keyword
    whole: bool = False                 # the node is the number itself (``range(1000)``'s 1000)

    def set(self, edits: Edits, code: str) -> None:
        if self.whole:
            edits.replace(self.node, lambda u: parse_expr(code))
        elif self.key is None:
            edits.replace(self.node, lambda u: u.with_changes(value=parse_expr(code)))
        else:
            edits.replace(self.node, lambda u, k=self.key: set_kwarg(u, k, code))


def _number(expr: cst.BaseExpression | None) -> float | None:
    """The number a literal expression holds (``3e-4``, ``1_000``, ``-1``), else None."""
    if expr is None:
        return None
    try:
        value = ast.literal_eval(code_of(expr).strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _flags(names: tuple[str, ...]) -> set[str]:
    return {f"--{n}" for n in names} | {f"--{n.replace('_', '-')}" for n in names}


def _flag_sites(info: ScriptInfo, names: tuple[str, ...]) -> list[_Site]:
    """``add_argument("--name", default=...)`` for each of ``names`` (dashes or underscores)."""
    flags, out = _flags(names), []
    for call in info.method_calls("add_argument"):
        if call.args and isinstance(call.args[0].value, cst.SimpleString) and \
                call.args[0].value.evaluated_value in flags and kwarg(call, "default") is not None:
            flag = call.args[0].value.evaluated_value
            out.append(_Site(call, "default", _number(kwarg(call, "default").value),
                             f"the `{flag}` default (line {info.line(call)})", flag.lstrip("-").replace("-", "_")))
    return out


def _assign_sites(info: ScriptInfo, names: tuple[str, ...]) -> list[_Site]:
    """Module-level ``name = <number>`` for each of ``names`` assigned once at module level."""
    found: dict[str, list[cst.Assign]] = {}
    for stmt in info.module.body:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, cst.Assign) and len(small.targets) == 1 and \
                        isinstance(small.targets[0].target, cst.Name) and small.targets[0].target.value in names:
                    found.setdefault(small.targets[0].target.value, []).append(small)
    return [_Site(a[0], None, _number(a[0].value), f"`{n} = ...` (line {info.line(a[0])})", n)
            for n, a in found.items() if len(a) == 1]


def _kwarg_sites(info: ScriptInfo, calls: list[cst.Call], names: tuple[str, ...]) -> list[_Site]:
    out = []
    for call in calls:
        for name in names:
            arg = kwarg(call, name)
            if arg is not None:
                out.append(_Site(call, name, _number(arg.value), f"`{name}=` (line {info.line(call)})", name))
    return out


def _range_literal(info: ScriptInfo, loop: cst.CSTNode) -> _Site | None:
    """``for ... in range(N)`` with N a whole-number literal: N as a site."""
    if not (isinstance(loop, cst.For) and isinstance(loop.iter, cst.Call) and isinstance(loop.iter.func, cst.Name)
            and loop.iter.func.value == "range" and len(loop.iter.args) == 1
            and isinstance(loop.iter.args[0].value, cst.Integer)):
        return None
    n = loop.iter.args[0].value
    return _Site(n, None, _number(n), f"`{code_of(loop.iter).strip()}` (line {info.line(loop)})", whole=True)


def _loop_sites(info: ScriptInfo) -> tuple[list[_Site], list[_Site]]:
    """The literal loops around each ``opt.step()``: (the innermost, when it is ``range(N)``: it
    counts steps; ``range(N)`` loops outside a loop over data: they count epochs)."""
    steps, epochs = [], []
    for stmt, _, _ in step_stmts(info, info.module):
        loops = []
        for anc in info.ancestors(stmt):
            if isinstance(anc, (cst.FunctionDef, cst.ClassDef)):
                break
            if isinstance(anc, (cst.For, cst.While)):
                loops.append(anc)
        if not loops:
            continue
        inner = _range_literal(info, loops[0])
        if inner is not None:
            steps.append(inner)
        elif isinstance(loops[0], cst.For):              # a loop over data: the range loops outside count epochs
            epochs += [s for s in (_range_literal(info, x) for x in loops[1:]) if s is not None]
    return steps, epochs


def _num_code(value: float, integer: bool) -> str:
    if integer:
        return str(int(round(value)))
    text = f"{value:.6g}"
    return text if any(c in text for c in ".e") else text + ".0"


@register("batch_size")
class BatchSize(TweakCodemod):
    DESCRIPTION = ("Train with a larger batch that fits the memory headroom, with the learning rate and the run's "
                   "length the contract says.")

    def plan(self, info: ScriptInfo, edits: Edits) -> None:
        size, factor = self.opt("batch_size"), self.opt("factor")
        keep, rule = self.opt("keep"), self.opt("lr_rule")
        if size is None and factor is None:
            raise Skip("needs the new size: --option batch_size=N (or --from advice.json)")
        hf = info.kind == "hf_trainer"
        site = self._batch_site(info, hf)
        old = int(site.value) if site.value is not None else None
        if size is None and old is None:
            raise Skip(f"batch_size.factor needs the old batch as a number; {site.where} is not one: "
                       "pass --option batch_size=N")
        new = int(size) if size is not None else max(1, round(old * factor))
        if old == new:
            raise AlreadyApplied(f"batch {new} at {site.where}")
        self._write(edits, site, str(new))
        if old is None:
            self.notes.append(f"batch set to {new} at {site.where}, whose old value is not a number: scale the "
                              "learning rate and the run's length for the new batch yourself")
            return
        k = new / old
        opt_cls = "AdamW" if hf else next((info.optimizer_class(c) for c in info.optimizer_calls()), None)
        rule = rule or lr_rule_for(opt_cls)
        self.notes.append(f"batch {old} -> {new} (x {k:.3g}) at {site.where}, keep={keep}")
        self._learning_rate(info, edits, hf, rule, k, opt_cls)
        self._run_length(info, edits, hf, keep, old, new)

    def _write(self, edits: Edits, site: _Site, code: str) -> None:
        """Set ``site`` to ``code``; when the run the advice came from set it on its command line
        (``--lr 0.1``, nanoGPT's ``--batch_size=4``), the new default alone would not reach that run: say so."""
        site.set(edits, code)
        if not self.argv or not site.name or site.whole or site.key not in ("default", None):
            return
        flags = _flags((site.name,))
        given = [a for a in self.argv if a in flags or a.split("=", 1)[0] in flags]
        if given:
            self.notes.append(f"the run's command line sets {given[0].split('=', 1)[0]}: pass "
                              f"{given[0].split('=', 1)[0]}={code} there too (the rewrite changes the default)")

    def _batch_site(self, info: ScriptInfo, hf: bool) -> _Site:
        if hf:
            calls = info.training_args_calls()
            if not calls:
                raise Skip("looked for a `TrainingArguments(...)` call; pass --per_device_train_batch_size")
            got = _kwarg_sites(info, calls[:1], ("per_device_train_batch_size",))
            return got[0] if got else _Site(calls[0], "per_device_train_batch_size", HF_BATCH,
                                            f"`TrainingArguments(...)` (line {info.line(calls[0])}, default {HF_BATCH})")
        for s in _flag_sites(info, tuple(f.lstrip("-") for f in FLAGS)):
            return s
        for call in info.calls_of("dataloader"):
            if kwarg_code(call, "shuffle") in ("True", None) and kwarg(call, "batch_size") is not None and \
                    isinstance(kwarg(call, "batch_size").value, cst.Integer):
                return _Site(call, "batch_size", _number(kwarg(call, "batch_size").value),
                             f"`DataLoader(..., batch_size=)` (line {info.line(call)})")
        for s in _assign_sites(info, ("batch_size",)):
            if s.value is not None:
                return s
        raise Skip("looked for a `--batch-size` argparse default, a `DataLoader(..., batch_size=N)` "
                   "literal and a module-level `batch_size = N`; found none")

    def _lr_sites(self, info: ScriptInfo, hf: bool) -> tuple[list[_Site], list[str]]:
        """Where the learning rate is a number the rewrite can scale, and where it is not."""
        if hf:
            calls = info.training_args_calls()[:1]
            got = _kwarg_sites(info, calls, ("learning_rate",))
            return (got or [_Site(calls[0], "learning_rate", HF_LR,
                                  f"`TrainingArguments(...)` (line {info.line(calls[0])}, default {HF_LR:g})")]), []
        sites: dict[tuple[int, str | None], _Site] = {}
        missing = []
        flag_by_dest = {s.name: s for s in _flag_sites(info, LR_NAMES)}
        assigns = {s.name: s for s in _assign_sites(info, LR_NAMES)}
        for call in info.optimizer_calls():
            arg = kwarg(call, "lr") or (call.args[1] if len(call.args) > 1 and call.args[1].keyword is None else None)
            if arg is None:
                missing.append(f"`{info.optimizer_class(call)}(...)` (line {info.line(call)}) uses its default lr")
                continue
            value, site = _number(arg.value), None
            ref = code_of(arg.value).strip()
            if value is not None:
                site = (_Site(call, "lr", value, f"`lr=` (line {info.line(call)})") if arg.keyword is not None
                        else _Site(arg.value, None, value, f"the lr argument (line {info.line(call)})", whole=True))
            elif ref in assigns:
                site = assigns[ref]
            elif "." in ref and ref.split(".")[-1] in flag_by_dest:
                site = flag_by_dest[ref.split(".")[-1]]
            if site is None or site.value is None:
                missing.append(f"`lr={ref}` (line {info.line(call)})")
            else:
                sites[(id(site.node), site.key)] = site
        if not info.optimizer_calls():
            for s in list(flag_by_dest.values()) + list(assigns.values()):
                if s.value is not None:
                    sites[(id(s.node), s.key)] = s
        # nanoGPT-style configs decay to a floor: it scales with the peak
        for name in ("min_lr",):
            s = assigns.get(name) or flag_by_dest.get(name)
            if s is not None and s.value is not None and sites:
                sites[(id(s.node), s.key)] = s
        return list(sites.values()), missing

    def _learning_rate(self, info: ScriptInfo, edits: Edits, hf: bool, rule: str, k: float, opt_cls: str | None) -> None:
        m = lr_factor(rule, k)
        if m == 1.0:
            self.notes.append(f"learning rate {describe_rule(rule, k, opt_cls)}")
            return
        sites, missing = self._lr_sites(info, hf)
        for s in sites:
            self._write(edits, s, _num_code(s.value * m, False))
            self.notes.append(f"learning rate {s.value:g} -> {s.value * m:.6g} at {s.where}, "
                              f"{describe_rule(rule, k, opt_cls)}")
        for where in missing:
            self.notes.append(f"learning rate at {where} is not a number this rewrite can scale: multiply it by {m:.4g} "
                              f"yourself ({describe_rule(rule, k, opt_cls)})")
        if not sites and not missing:
            self.notes.append(f"no learning rate found: multiply yours by {m:.4g} ({describe_rule(rule, k, opt_cls)})")

    def _run_length(self, info: ScriptInfo, edits: Edits, hf: bool, keep: str, old: int, new: int) -> None:
        k = new / old
        args = info.training_args_calls()[:1] if hf else []
        loop_steps, loop_epochs = ([], []) if hf else _loop_sites(info)
        if keep == "steps":
            whole = [s for s in loop_epochs if float(epochs_after(s.value, old, new, keep)).is_integer()]
            for s in loop_epochs:
                if s not in whole:
                    self.notes.append(f"keep=steps: {s.where} counts epochs; {s.value:g} x {k:.3g} is no whole "
                                      f"number of epochs: set it yourself")
            sites = _flag_sites(info, EPOCH_NAMES) + _assign_sites(info, EPOCH_NAMES) + \
                _kwarg_sites(info, args, ("num_train_epochs",)) + whole
            if hf and not any(s.key == "num_train_epochs" for s in sites):
                sites.append(_Site(args[0], "num_train_epochs", HF_EPOCHS,
                                   f"`TrainingArguments(...)` (line {info.line(args[0])}, default {HF_EPOCHS:g})"))
            done = self._scale(edits, sites, lambda v: epochs_after(v, old, new, keep), "epochs")
            if not done:
                self.notes.append(f"keep=steps: no epoch limit found as a number; if your run is limited in epochs, "
                                  f"multiply it by {k:.3g} (limits and schedules in steps stay)")
            else:
                self.notes.append("limits and schedules in steps stay")
            return
        steps = _flag_sites(info, STEP_NAMES) + _assign_sites(info, STEP_NAMES) + \
            _kwarg_sites(info, args, ("max_steps",)) + loop_steps
        sched = _flag_sites(info, SCHEDULE_NAMES) + _assign_sites(info, SCHEDULE_NAMES) + \
            _kwarg_sites(info, args, ("warmup_steps",)) + self._schedule_calls(info)
        done = self._scale(edits, steps, lambda v: steps_after(int(v), old, new, keep), "steps")
        done += self._scale(edits, sched, lambda v: steps_after(int(v), old, new, keep), "schedule steps")
        self.notes.append(f"keep=samples: limits in epochs stay (each epoch has {k:.3g}x fewer steps)"
                          + ("" if done else f"; no limit or schedule in steps found as a number: if your run or "
                             f"its LR schedule is set in steps, divide it by {k:.3g}"))

    def _schedule_calls(self, info: ScriptInfo) -> list[_Site]:
        """Literal lengths in steps of schedule constructors: transformers' ``get_*_schedule_with_warmup``
        and ``torch.optim.lr_scheduler.OneCycleLR(total_steps=)``."""
        out = []
        calls = info.calls_matching(lambda q: q.endswith("_schedule_with_warmup") or q.endswith("get_scheduler"),
                                    needs=("schedule",))
        out += _kwarg_sites(info, calls, ("num_warmup_steps", "num_training_steps"))
        out += _kwarg_sites(info, info.calls_matching(lambda q: q.endswith("OneCycleLR"), needs=("OneCycleLR",)),
                            ("total_steps",))
        return out

    def _scale(self, edits: Edits, sites: list[_Site], fn, what: str) -> int:
        n = 0
        seen = set()
        for s in sites:
            if s.value is None or s.value <= 0 or (id(s.node), s.key) in seen:
                continue
            seen.add((id(s.node), s.key))
            value = fn(s.value)
            integer = float(value).is_integer() and (isinstance(s.value, int) or what != "epochs")
            self._write(edits, s, _num_code(value, integer))
            self.notes.append(f"{what} {s.value:g} -> {value:g} at {s.where}")
            n += 1
        return n
