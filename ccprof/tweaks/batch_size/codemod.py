"""batch_size: set the training batch size to ``options["batch_size"]`` under the advice's contract.

Where the run took it from, when the advice's profile tells (``--from advice.json``: profile.json's
``sites``, set by ``_settings.set_value``): the ``add_argument`` default and the run's option when
its command line set it, a module global (and nanoGPT's ``--batch_size=N``), a config field
(``--trainer.batch_size=N`` when the run set it there, else ``config.trainer.batch_size = N`` just
before the line that built the loader), the training loader's literal, the keyword of the script's
call of a factory; refused, naming the file and line, when it is written in another file of the
project. Without sites, where the script says it: the ``--batch-size`` argparse default, the
shuffled DataLoader's ``batch_size=`` literal or a module-level ``batch_size = N``;
``per_device_train_batch_size`` for the HF Trainer (on the command line when ``HfArgumentParser``
builds the TrainingArguments).

With the batch k times as large it writes the same contract the advice priced (``contract.py``):
the learning rate scaled by the rule (where the run's optimizer took it from, else the optimizer's
``lr=`` literal, the module-level name or ``--lr`` default it reads, ``learning_rate`` of
``TrainingArguments``); with ``keep="samples"`` every limit and schedule length in steps divided by k
(``max_iters``, ``warmup_iters``, ``lr_decay_iters``, ``max_steps``, a ``get_*_schedule_with_warmup``
literal), epochs kept; with ``keep="steps"`` the epochs multiplied by k. An option the run set on its
command line (``--lr``, ``--trainer.max_iters``) is changed there too, from the run's value.

An assert on the batch or a value derived from it (llm.c's ``args.total_batch_size %
tokens_per_fwdbwd == 0``, ``ccprof.script.invariants``) is kept true: a total that must stay a
multiple is raised to the next multiple, and being the batch each optimizer step sees, it is what
the contract scales by; any other assert the new batch breaks refuses the rewrite, quoting it.
What the rewrite cannot find as a number it names in its note, with the value to set.
"""
from __future__ import annotations

import ast
import os
from dataclasses import dataclass, replace

import libcst as cst

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import AlreadyApplied, Skip, TweakCodemod
from ccprof.applier.codemods._cst import Edits, code_of, kwarg, kwarg_code, parse_expr, set_kwarg
from ccprof.applier.codemods._settings import set_value
from ccprof.applier.codemods._sites import where as site_where
from ccprof.artefacts.profile import CallSite, Setting
from ccprof.profiler.run_size import EPOCH_NAMES, STEP_NAMES
from ccprof.script.flags import script_options
from ccprof.script.info import ScriptInfo
from ccprof.script.invariants import asserts_on
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


def _argv_numbers(argv: list[str] | None) -> list[tuple[str, float]]:
    """The numeric options of a command line, as written: ``--max_iters=1000`` and
    ``--trainer.max_iters 1000`` -> ("--max_iters", 1000), ("--trainer.max_iters", 1000)."""
    out = []
    args = list(argv or [])
    for i, a in enumerate(args):
        if not a.startswith("--"):
            continue
        flag, eq, text = a.partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                continue
            text = args[i + 1]
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append((flag, value))
    return out


def _option_name(flag: str) -> str:
    """``--trainer.max_iters`` -> ``max_iters``; ``--max-iters`` -> ``max_iters``."""
    return flag.lstrip("-").rsplit(".", 1)[-1].replace("-", "_")


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
        self._hf_parser = hf and not info.training_args_calls() and info.facts.mentions("HfArgumentParser")
        got = self._batch_from_run(info, edits, hf, size, factor)
        if got is None:
            got = self._hf_parser_batch(size, factor) if self._hf_parser else \
                self._batch_in_script(info, edits, hf, size, factor)
        old, new, where, changed = got
        if old is None:
            self.notes.append(f"batch set to {new} at {where}, whose old value is not a number: scale the "
                              "learning rate and the run's length for the new batch yourself")
            return
        self.notes.append(f"batch {old} -> {new} (x {new / old:.3g}) at {where}, keep={keep}")
        # the batch an optimizer step sees: the micro-batch, or a total the script asserts is a multiple of it
        old, new = self._invariants(info, edits, changed, old, new)
        k = new / old
        opt_cls = "AdamW" if hf else next((info.optimizer_class(c) for c in info.optimizer_calls()), None) \
            or self._run_optimizer()
        rule = rule or lr_rule_for(opt_cls)
        self._learning_rate(info, edits, hf, rule, k, opt_cls)
        self._run_length(info, edits, hf, keep, old, new)

    # ---- the batch
    def _batch_from_run(self, info: ScriptInfo, edits: Edits, hf: bool, size, factor):
        """Where the run took its training batch from (profile.json's sites), changed there:
        (old, new, where, (name, argparse dest)); None when the run does not tell."""
        site = self.run.training("training_args") if hf else None
        setting = self.run.setting(site, "per_device_train_batch_size")
        if setting is None and not hf:
            site = self.run.training("dataloader")
            setting = self.run.setting(site, "batch_size")
        if site is None or setting is None or setting.kind == "unknown":
            return None
        old = setting.value if isinstance(setting.value, (int, float)) and not isinstance(setting.value, bool) \
            else None
        if size is None and old is None:
            raise Skip(f"batch_size.factor needs the old batch as a number; the run's is {setting.value!r}: "
                       "pass --option batch_size=N")
        new = int(size) if size is not None else max(1, round(old * factor))
        origin = setting.path or setting.code or "the call's default"
        if old is not None and int(old) == new:
            raise AlreadyApplied(f"the run's training batch is {new} (`{origin}`)")
        what = "the `TrainingArguments`" if setting.name.startswith("per_device") else "the training DataLoader"
        placed = set_value(info, edits, site, setting, str(new), script=self.context.filename or "", what=what,
                           argv=self.argv)
        if not placed.ok:
            raise Skip(placed.refusal)
        self.command_line.update(placed.command_line)
        changed = None
        if setting.kind == "argparse" and setting.path:
            changed = (setting.path.rsplit(".", 1)[-1],) * 2
        elif setting.kind == "global" and setting.path:
            changed = (setting.path, "")
        return (int(old) if old is not None else None), new, placed.where, changed

    def _hf_parser_batch(self, size, factor):
        """TrainingArguments that ``HfArgumentParser`` builds from the command line: the batch is
        ``--per_device_train_batch_size`` there (the class default when the run did not set it)."""
        flag = "--per_device_train_batch_size"
        if self.argv is None:
            raise Skip("the script builds its TrainingArguments with HfArgumentParser from the command line: "
                       f"pass {flag}=N there (or apply --from advice.json, which knows the run's command line)")
        old = int(dict(_argv_numbers(self.argv)).get(flag, HF_BATCH))
        new = int(size) if size is not None else max(1, round(old * factor))
        if old == new:
            raise AlreadyApplied(f"the run's {flag} is {new}")
        self.command_line[flag] = str(new)
        return old, new, f"`{flag}` on the run's command line (HfArgumentParser)", None

    def _batch_in_script(self, info: ScriptInfo, edits: Edits, hf: bool, size, factor):
        """The batch as the script alone says it (no run known): the first of the sites below."""
        site = self._in_run(self._batch_site(info, hf))
        old = int(site.value) if site.value is not None else None
        if size is None and old is None:
            raise Skip(f"batch_size.factor needs the old batch as a number; {site.where} is not one: "
                       "pass --option batch_size=N")
        new = int(size) if size is not None else max(1, round(old * factor))
        if old == new:
            raise AlreadyApplied(f"batch {new} at {site.where}")
        self._write(edits, site, str(new))
        changed = None
        if site.key == "default" and site.name:
            changed = (site.name, site.name)
        elif site.key is None and site.name and not site.whole:
            changed = (site.name, "")
        return old, new, site.where, changed

    def _run_optimizer(self) -> str | None:
        site = self.run.training("optimizer")
        return site.cls.rsplit(".", 1)[-1] if site is not None and site.cls else None

    def _invariants(self, info: ScriptInfo, edits: Edits, changed, old: int, new: int) -> tuple[int, int]:
        """The asserts on the batch or a value derived from it, with the new batch: a total the
        script asserts is a multiple of it is raised to the next multiple (and is then the batch the
        contract scales by); an assert the new batch breaks otherwise refuses the rewrite."""
        if changed is None:
            return old, new
        name, dest = changed
        options = script_options(info, self.argv or [])
        step = (old, new)
        for inv in asserts_on(info, name, options, new, dest=dest):
            mult = inv.multiple
            if mult is not None and (inv.after or mult.new != mult.old):
                if mult.new != mult.old:
                    setting = self._option_setting(info, options, mult.name, mult.code)
                    placed = set_value(info, edits, CallSite("script"), setting, str(mult.new),
                                       script=self.context.filename or "", what="the script")
                    if not placed.ok:
                        raise Skip(f"batch {new} breaks the script's {inv.quote()}: {mult.code} would have to be "
                                   f"a multiple of {mult.per_step}; {placed.refusal}")
                    self.command_line.update(placed.command_line)
                    self.notes.append(f"{inv.quote()} needs {mult.code} to be a multiple of {mult.per_step} with "
                                      f"batch {new}: {mult.name} {mult.old} -> {mult.new} at {placed.where} "
                                      f"(the next multiple, for one process: RANK and WORLD_SIZE unset); each "
                                      f"optimizer step sees that total, so the learning rate and the run's length "
                                      f"follow its x {mult.new / mult.old:.3g}")
                else:
                    self.notes.append(f"{inv.quote()} still holds with batch {new}: {mult.code} = {mult.old}")
                # the optimizer step's batch is that total: the contract scales by its change
                step = (mult.old, mult.new)
                if mult.new == mult.old:
                    self.notes.append(f"each optimizer step still sees {mult.code} = {mult.old} "
                                      "(fewer accumulated micro-batches): the learning rate and the run's length stay")
                continue
            if inv.after is False:
                raise Skip(f"batch {new} breaks the script's {inv.quote()} (true in the run, false with batch "
                           f"{new}, for one process: RANK and WORLD_SIZE unset): change what it checks, or pick a batch it allows")
            if inv.after is None:
                self.notes.append(f"check {inv.quote()} with batch {new}: it reads values ccprof cannot compute "
                                  "without running the script")
        return step

    def _option_setting(self, info: ScriptInfo, options, name: str, code: str) -> Setting:
        """``name`` (an argparse dest or a module global of the script) as a ``Setting``, with the
        element of the run's command line that set it."""
        if name in options.dests:
            flag, kind = options.dests[name], "argparse"
        else:
            flag, kind = (f"--{name}" if name in options.config else ""), "global"
        given = next((a for a in (self.argv or []) if flag and (a == flag or a.startswith(flag + "="))), "")
        return Setting(name, kind=kind, path=code, flag=flag, argv=given,
                       file=os.path.basename(self.context.filename or ""))

    def _in_run(self, site: _Site) -> _Site:
        """``site`` with the value the run used: the command line's when the run set that option there
        (``--lr 0.1`` over ``default=0.05``), else the script's."""
        if not self.argv or not site.name or site.whole or site.key not in ("default", None):
            return site
        flags = _flags((site.name,))
        given = [v for f, v in _argv_numbers(self.argv) if f in flags]
        return replace(site, value=given[0]) if given else site

    def _write(self, edits: Edits, site: _Site, code: str | None, run_code: str | None = None) -> None:
        """Set ``site`` to ``code`` (None: leave the script's as it is); when the run the advice came
        from set it on its command line (``--lr 0.1``, nanoGPT's ``--batch_size=4``), the new default
        alone would not reach that run: ``run_code`` (else ``code``) goes on the command line too."""
        if code is not None:
            site.set(edits, code)
        if not self.argv or not site.name or site.whole or site.key not in ("default", None):
            return
        flags = _flags((site.name,))
        given = [a for a in self.argv if a in flags or a.split("=", 1)[0] in flags]
        if given:
            flag = given[0].split("=", 1)[0]
            self.command_line[flag] = run_code if run_code is not None else str(code)
            self.notes.append(f"the run's command line sets {flag}: {flag}={self.command_line[flag]} goes there "
                              "too" + (" (the rewrite changes the default)" if code is not None else ""))

    def _scaled(self, edits: Edits, site: _Site, fn, integer: bool) -> tuple[float | None, float]:
        """``site`` and, when the run set it on its command line, that option, each scaled by ``fn``
        from its own value (a default of 100000 and the run's --max_iters=1000): (the run's old value,
        its new value); (None, 0) when neither is a number."""
        run = self._in_run(site)
        if run.value is None:
            return None, 0.0

        def code(v: float) -> str:
            new = fn(v)
            return _num_code(new, integer and float(new).is_integer())

        self._write(edits, site, code(site.value) if site.value is not None else None, code(run.value))
        return run.value, fn(run.value)

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
        forward = self.run.training("forward")
        if forward is not None:
            raise Skip(f"the training batch is made by the script's own code, not a DataLoader, an argparse "
                       f"option or a module-level `batch_size`: the model is called at "
                       f"{site_where(forward, self.context.filename or '')} with it; set its size where that batch "
                       "is built, or pass --option batch_size=N after giving it one of those")
        raise Skip("the batch is not a `--batch-size` argparse default, a `DataLoader(..., batch_size=N)` "
                   "literal nor a module-level `batch_size = N`, and no run recorded where it is made: run "
                   "`ccprof analyze` and pass --from advice.json, or set it where your code builds the batch")

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
        if self._lr_from_run(info, edits, m, rule, k, opt_cls):
            return
        if self._hf_parser:             # TrainingArguments from the command line: its learning_rate too
            flag = "--learning_rate"
            old = dict(_argv_numbers(self.argv)).get(flag, HF_LR)
            self.command_line[flag] = _num_code(old * m, False)
            self.notes.append(f"learning rate {old:g} -> {old * m:.6g} on the run's command line ({flag}), "
                              f"{describe_rule(rule, k, opt_cls)}")
            return
        sites, missing = self._lr_sites(info, hf)
        for s in sites:
            old, new = self._scaled(edits, s, lambda v: v * m, False)
            self.notes.append(f"learning rate {old:g} -> {new:.6g} at {s.where}, {describe_rule(rule, k, opt_cls)}")
        if not sites and self._scale_argv(LR_NAMES, lambda v: v * m, "learning rate", False):
            self.notes.append(f"learning rate {describe_rule(rule, k, opt_cls)}")
            return
        for where in missing:
            self.notes.append(f"learning rate at {where} is not a number this rewrite can scale: multiply it by {m:.4g} "
                              f"yourself ({describe_rule(rule, k, opt_cls)})")
        if not sites and not missing:
            self.notes.append(f"no learning rate found: multiply yours by {m:.4g} ({describe_rule(rule, k, opt_cls)})")

    def _lr_from_run(self, info: ScriptInfo, edits: Edits, m: float, rule: str, k: float, opt_cls: str | None) -> bool:
        """The training optimizer's ``lr`` where the run took it from (profile.json's sites);
        False when the run does not tell or it cannot be set from the script (the script's own
        sites are tried then)."""
        site = self.run.training("optimizer")
        setting = self.run.setting(site, "lr")
        if site is None or setting is None or setting.kind == "unknown" or \
                not isinstance(setting.value, (int, float)) or isinstance(setting.value, bool):
            return False
        code = _num_code(setting.value * m, False)
        placed = set_value(info, edits, site, setting, code, script=self.context.filename or "", what="the optimizer",
                           argv=self.argv)
        if not placed.ok:
            return False
        self.command_line.update(placed.command_line)
        self.notes.append(f"learning rate {setting.value:g} -> {code} at {placed.where}, {describe_rule(rule, k, opt_cls)}")
        for s in _assign_sites(info, ("min_lr",)) + _flag_sites(info, ("min_lr",)):
            if self._in_run(s).value:    # a floor the schedule decays to: it scales with the peak
                old, new = self._scaled(edits, s, lambda v: v * m, False)
                self.notes.append(f"min_lr {old:g} -> {new:.6g} at {s.where}")
        return True

    def _scale_argv(self, names: tuple[str, ...], fn, what: str, integer: bool) -> int:
        """Options of the run's command line named like ``names`` (``--max_iters=1000``,
        ``--trainer.max_iters=1000``) that no site above changed, scaled there: how many."""
        n = 0
        for flag, value in _argv_numbers(self.argv):
            if _option_name(flag) not in names or flag in self.command_line:
                continue
            new = fn(value)
            self.command_line[flag] = _num_code(new, integer and float(new).is_integer())
            self.notes.append(f"{what} {value:g} -> {self.command_line[flag]} on the run's command line ({flag})")
            n += 1
        return n

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
            if hf and args and not any(s.key == "num_train_epochs" for s in sites):
                sites.append(_Site(args[0], "num_train_epochs", HF_EPOCHS,
                                   f"`TrainingArguments(...)` (line {info.line(args[0])}, default {HF_EPOCHS:g})"))
            done = self._scale(edits, sites, lambda v: epochs_after(v, old, new, keep), "epochs")
            done += self._scale_argv(EPOCH_NAMES, lambda v: epochs_after(v, old, new, keep), "epochs", True)
            if self._hf_parser and "--num_train_epochs" not in self.command_line:
                self.command_line["--num_train_epochs"] = _num_code(epochs_after(HF_EPOCHS, old, new, keep), False)
                self.notes.append(f"epochs {HF_EPOCHS:g} (the TrainingArguments default) -> "
                                  f"{self.command_line['--num_train_epochs']} on the run's command line")
                done += 1
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
        done += self._scale_argv(STEP_NAMES + SCHEDULE_NAMES, lambda v: steps_after(int(v), old, new, keep),
                                 "steps", True)
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
            run = self._in_run(s).value
            if run is None or run <= 0 or (id(s.node), s.key) in seen:
                continue
            seen.add((id(s.node), s.key))
            old, value = self._scaled(edits, s, fn, isinstance(run, int) or what != "epochs")
            self.notes.append(f"{what} {old:g} -> {value:g} at {s.where}")
            n += 1
        return n
