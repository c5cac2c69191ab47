"""compile: ``model = torch.compile(model)`` for every model the run trained (plain loops),
before ``trainer.fit(model)`` (Lightning); ``torch_compile=True`` for the HF Trainer.

With the run's sites (``ccprof apply --from advice.json``): each trained root module is compiled
where the run built it (``CallSite(what="model")``): before the optimizer over it when the same
block builds one (the weights are loaded and moved by then), else after the statements that
finish it (``model.load_state_dict(...)``, ``model = model.to(device)``), before anything else
takes it. Without sites: before the optimizer over the model the script builds.

Note: a compiled module's ``state_dict()`` keys start with ``_orig_mod.``; the compiled module
forwards attribute access to the original (``model.configure_optimizers(...)`` still works).
"""
from __future__ import annotations

import libcst as cst

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import AlreadyApplied, Skip, TurnOn, TweakCodemod
from ccprof.applier.codemods._cst import Edits, attr_chain, code_of, parse_stmts, set_kwarg
from ccprof.applier.codemods._model import model_insertion, param_owners
from ccprof.applier.codemods._sites import RunSites
from ccprof.artefacts.profile import CallSite
from ccprof.script.info import ScriptInfo
from ccprof.script.nodes import names_in

__all__ = ["Compile"]

# methods that finish a model in place before training: the compile goes after them
_PREP_METHODS = ("load_state_dict", "to", "cuda", "half", "bfloat16", "float", "apply", "train",
                 "init_weights", "tie_weights", "requires_grad_")


@register("compile")
class Compile(TweakCodemod):
    DESCRIPTION = "Compile the model with torch.compile."

    def check_applied(self, info: ScriptInfo) -> None:
        """As the base class, except that with the run's model sites a script compiling some of
        the trained models (a GAN's G, not D) is not "already applied": ``plan`` compiles the rest."""
        try:
            super().check_applied(info)
        except TurnOn:
            raise
        except AlreadyApplied as e:
            if not self._roots() or info.kind in ("hf_trainer", "lightning"):
                raise
            self._seen = e                 # said again when every trained model proves compiled

    def plan(self, info: ScriptInfo, edits: Edits) -> None:
        if info.kind == "hf_trainer":
            calls = info.training_args_calls()
            if not calls:
                raise Skip("looked for a `TrainingArguments(...)` call; pass --torch_compile on the command line")
            for call in calls:
                edits.replace(call, lambda u: set_kwarg(u, "torch_compile", "True"))
            return
        if info.kind == "lightning":
            for c in info.method_calls("fit"):
                if c.args and isinstance(c.args[0].value, cst.Name):
                    name = c.args[0].value.value
                    edits.insert_before(info.stmt_of(c), parse_stmts(f"{name} = torch.compile({name})\n", info.module))
                    self.need_import("torch")
                    return
            raise Skip("looked for `trainer.fit(model, ...)` to compile the model before it")
        roots = self._roots()
        if roots:
            return self._compile_roots(info, edits, roots)
        stmt, name = model_insertion(info)
        edits.insert_before(stmt, parse_stmts(f"{name} = torch.compile({name})\n", info.module))
        self.need_import("torch")
        self._state_dict_note(info, {name})

    def _roots(self) -> list[CallSite]:
        """The run's trained root modules, where each was built (none: an older profile, or no --from)."""
        return [s for s in self.run.of("model") if s.role != "eval"]

    def _compile_roots(self, info: ScriptInfo, edits: Edits, roots: list[CallSite]) -> None:
        """``name = torch.compile(name)`` for every trained root the script does not compile yet."""
        script = self.context.filename or ""
        outside = RunSites.outside(roots, script, "called from")
        if outside:
            s, at = outside
            raise Skip(f"the run trained {_cls(s)}, built at {at}; this rewrite edits only "
                       f"this script: add `model = torch.compile(model)` where {_cls(s)} is built "
                       "(every trained model must be compiled for the step to be)")
        compiled = _compiled_names(info)
        done: set[tuple[int, str]] = set()
        names: set[str] = set()
        for s in roots:
            stmt = info.stmt_at(s.line)
            if stmt is None:
                raise Skip(f"line {s.line}: the run built {_cls(s)} there, but no statement of the script "
                           "holds that line (was the script edited since the run?)")
            name = _target(stmt)
            if name is None:
                raise Skip(f"line {s.line}: `{code_of(stmt).strip()}` builds {_cls(s)} without naming it; "
                           "assign it to a variable (`model = ...`) so it can be compiled")
            if name in compiled:
                continue                       # the script compiles this one already
            if not _used_as_module(info, name):
                raise Skip(f"line {s.line}: the run built {_cls(s)} while running `{code_of(stmt).strip()}`, "
                           f"and the script never uses `{name}` as a model (calls it, takes its parameters, "
                           f"passes it on): {_cls(s)} is built inside that call; compile it where it is built")
            before, anchor = _place(info, stmt, name)
            if (id(anchor), name) in done:
                continue                       # one statement built it several times (a loop)
            done.add((id(anchor), name))
            names.add(name)
            new = parse_stmts(f"{name} = torch.compile({name})\n", info.module)
            (edits.insert_before if before else edits.insert_after)(anchor, new)
        if not names:
            seen = getattr(self, "_seen", None)
            raise AlreadyApplied(f"{seen}; every model the run trained is compiled" if seen is not None
                                 else f"every model the run trained is compiled: {', '.join(sorted(compiled))}")
        self.need_import("torch")
        self._state_dict_note(info, names)

    def _state_dict_note(self, info: ScriptInfo, names: set[str]) -> None:
        saves = sorted({info.line(c) for c in info.calls if isinstance(c.func, cst.Attribute)
                        and c.func.attr.value in ("state_dict", "load_state_dict")
                        and (attr_chain(c.func.value) or "") in names})
        if saves:
            self.notes.append(f"line{'s' if len(saves) > 1 else ''} {', '.join(map(str, saves))}: a compiled "
                              "module's state_dict() keys start with `_orig_mod.`; save and load "
                              f"`{min(names)}._orig_mod.state_dict()` to keep checkpoints loadable into an uncompiled "
                              "model")


def _cls(site: CallSite) -> str:
    return site.cls.rsplit(".", 1)[-1] or "the model"


def _target(stmt: cst.BaseStatement) -> str | None:
    """What ``stmt`` assigns the model to: its one plain or attribute target (``model``,
    ``self.model``); None when it names no one thing."""
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return None
    node = stmt.body[0]
    if isinstance(node, cst.Assign) and len(node.targets) == 1:
        target = attr_chain(node.targets[0].target)
    elif isinstance(node, cst.AnnAssign) and node.value is not None:
        target = attr_chain(node.target)
    else:
        return None
    return target


# what a script does with a model (and not with a trainer object that builds one inside: not
# `.train()`, a Trainer's method too)
_MODULE_METHODS = ("parameters", "named_parameters", "to", "cuda", "state_dict", "load_state_dict",
                   "modules", "children", "named_modules", "apply", "half", "bfloat16", "requires_grad_",
                   "generate")


def _used_as_module(info: ScriptInfo, name: str) -> bool:
    """Whether the script calls ``name``, calls a module method on it or passes it to a call: a
    model rather than an object that builds one inside (``trainer = Trainer(cfg)``)."""
    for c in info.calls:
        chain = attr_chain(c.func)
        if chain == name:
            return True
        if isinstance(c.func, cst.Attribute) and (c.func.attr.value in _MODULE_METHODS
                                                  or c.func.attr.value == "forward") \
                and attr_chain(c.func.value) == name:
            return True
        if any(attr_chain(a.value) == name for a in c.args):
            return True
    return False


def _compiled_names(info: ScriptInfo) -> set[str]:
    """Names the script passes to ``torch.compile`` (``G = torch.compile(G)``) or compiles in place
    (``model.compile()``)."""
    out: set[str] = set()
    for c in info.calls_of("compile"):
        if c.args:
            chain = attr_chain(c.args[0].value)
            if chain:
                out.add(chain)
    for c in info.method_calls("compile"):
        if isinstance(c.func, cst.Attribute) and not info.is_of(c, "compile"):
            chain = attr_chain(c.func.value)
            if chain and chain not in ("re", "regex"):
                out.add(chain)
    return out


def _place(info: ScriptInfo, built: cst.BaseStatement, name: str) -> tuple[bool, cst.BaseStatement]:
    """(before?, statement): where ``name = torch.compile(name)`` goes for the model ``built`` makes.

    Before the first optimizer over ``name`` that the same block builds after it; else after the
    statements right after ``built`` that finish the model (``name.load_state_dict(...)``,
    ``name = name.to(device)``), stopping at the first that hands it elsewhere."""
    block = info.block_of(built)
    body = list(block.body) if block is not None else []
    if built not in body:
        return False, built
    later = body[body.index(built) + 1:]
    for stmt, _name, call in info.optimizer_assigns():
        if stmt in later and name in param_owners(call):
            return True, stmt
    anchor = built
    for stmt in later:
        if name not in names_in(stmt) and name.split(".")[0] not in names_in(stmt):
            continue
        if not _finishes(stmt, name):
            break
        anchor = stmt
    return False, anchor


def _finishes(stmt: cst.CSTNode, name: str) -> bool:
    """``name.load_state_dict(...)``, ``name.to(device)``, ``name = name.to(device)``: a statement
    that only finishes the model, in place or by rebinding it."""
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return False
    node = stmt.body[0]
    if isinstance(node, cst.Expr) and isinstance(node.value, cst.Call):
        func = node.value.func
        return (isinstance(func, cst.Attribute) and attr_chain(func.value) == name
                and func.attr.value in _PREP_METHODS)
    if isinstance(node, cst.Assign) and name in {attr_chain(t.target) for t in node.targets}:
        call = node.value
        return (isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute)
                and attr_chain(call.func.value) == name and call.func.attr.value in _PREP_METHODS)
    return False
