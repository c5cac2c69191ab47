"""Machinery shared by the codemods: the base class, one-pass edits, and what a script says.

A codemod reads the script through ``ScriptInfo`` (qualified names, so ``import torch as T``
and ``from torch import optim`` match ``torch.optim.AdamW``), records its changes in an
``Edits`` plan keyed by the original nodes, and the plan is applied in one pass. A codemod
that finds nothing to change raises ``Skip`` (with the line it looked for) or
``AlreadyApplied``; either way the script is returned untouched.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Callable, ClassVar, Iterable, Sequence

import libcst as cst
import libcst.matchers as m
from libcst.codemod import CodemodCommand, CodemodContext
from libcst.codemod.visitors import AddImportsVisitor, RemoveImportsVisitor

from ccprof.script.names import NAMES, matches
from ccprof.artefacts.tweaks import TweakOptions, options_for
from ccprof.applier.codemods._facts import ModuleFacts


class Skip(Exception):
    """The pattern a codemod needs is not in the script; the message names what it looked for."""


class AlreadyApplied(Exception):
    """The script already has the tweak; the message names the line that shows it."""


# --------------------------------------------------------------------------- names

FUSED_CAPABLE = ("SGD", "Adam", "AdamW", "Adagrad")          # torch.optim classes with fused=
VAL_LOSS_NAME = re.compile(r"^(val|valid|validation|eval|dev|test)_?(loss|losses)$", re.I)


def last_part(name: str) -> str:
    return name.rsplit(".", 1)[-1]


# --------------------------------------------------------------------------- edits


class Edits(cst.CSTTransformer):
    """A plan of changes keyed by original nodes, applied in one pass.

    ``replace(node, fn)``: fn(updated) -> new node (one for one).
    ``insert_before/after(stmt, stmts)``: new statements beside a statement of a block.
    ``remove(stmt)``; ``group(stmts, fn)``: contiguous statements of one block -> fn(updated list).
    ``apply(module, parent)`` runs the plan visiting only the paths to the edited nodes;
    ``module.visit(edits)`` visits everything (the same result, slower).
    """

    def __init__(self) -> None:
        super().__init__()
        self._replace: dict[int, Callable[[Any], Any]] = {}
        self._before: dict[int, list[cst.BaseStatement]] = defaultdict(list)
        self._after: dict[int, list[cst.BaseStatement]] = defaultdict(list)
        self._remove: set[int] = set()
        self._groups: dict[int, tuple[list[int], Callable[[list], cst.BaseStatement]]] = {}
        self._grouped: set[int] = set()
        self._keep: list[Any] = []           # keep originals alive so ids stay unique
        self._above: set[int] | None = None  # ids of the nodes holding an edited node (apply)

    def __bool__(self) -> bool:
        return bool(self._replace or self._before or self._after or self._remove or self._groups)

    def apply(self, module: cst.Module, parent: Callable[[cst.CSTNode], cst.CSTNode | None]) -> cst.Module:
        """``module`` with the plan applied, visiting only the nodes that hold an edited node:
        every other subtree is kept as the same object (so the new module shares it)."""
        above: set[int] = set()
        for node in self._keep:
            p = parent(node)
            while p is not None and id(p) not in above:
                above.add(id(p))
                p = parent(p)
        self._above = above
        try:
            return module.visit(self)
        finally:
            self._above = None

    def on_visit(self, node):  # type: ignore[override]
        return self._above is None or id(node) in self._above

    def replace(self, node: cst.CSTNode, fn: Callable[[Any], Any]) -> None:
        self._keep.append(node)
        old = self._replace.get(id(node))
        self._replace[id(node)] = fn if old is None else (lambda u, a=old, b=fn: b(a(u)))

    def insert_before(self, stmt: cst.CSTNode, stmts: Sequence[cst.BaseStatement]) -> None:
        self._keep.append(stmt)
        self._before[id(stmt)].extend(stmts)

    def insert_after(self, stmt: cst.CSTNode, stmts: Sequence[cst.BaseStatement]) -> None:
        self._keep.append(stmt)
        self._after[id(stmt)].extend(stmts)

    def remove(self, stmt: cst.CSTNode) -> None:
        self._keep.append(stmt)
        self._remove.add(id(stmt))

    def group(self, stmts: Sequence[cst.CSTNode], fn: Callable[[list], cst.BaseStatement]) -> None:
        self._keep.extend(stmts)
        ids = [id(s) for s in stmts]
        self._groups[ids[0]] = (ids, fn)
        self._grouped.update(ids[1:])

    def on_leave(self, original_node, updated_node):  # type: ignore[override]
        fn = self._replace.get(id(original_node))
        if fn is not None:
            updated_node = fn(updated_node)
        if isinstance(original_node, (cst.Module, cst.IndentedBlock)) and isinstance(
                updated_node, (cst.Module, cst.IndentedBlock)) and self._touches(original_node.body):
            updated_node = updated_node.with_changes(
                body=self._rebuild(original_node.body, updated_node.body))
        return updated_node

    def _touches(self, body: Sequence[cst.CSTNode]) -> bool:
        return any(id(s) in self._before or id(s) in self._after or id(s) in self._remove
                   or id(s) in self._groups or id(s) in self._grouped for s in body)

    def _rebuild(self, originals: Sequence[cst.CSTNode], updated: Sequence[cst.CSTNode]) -> list:
        by_id = {id(o): u for o, u in zip(originals, updated)}
        body: list = []
        for orig, upd in zip(originals, updated):
            key = id(orig)
            before = self._before.get(key, [])
            if key in self._groups:
                ids, fn = self._groups[key]
                upd = fn([by_id[i] for i in ids])
            elif key in self._grouped:
                upd = None
            elif key in self._remove:
                upd = None
            if before:
                body.extend(before)
            if upd is not None:
                body.append(upd)
            body.extend(self._after.get(key, []))
        return body


# --------------------------------------------------------------------------- source helpers


def parse_stmts(code: str, module: cst.Module | None = None) -> list[cst.BaseStatement]:
    """Statements parsed from ``code`` (no leading indentation), in the module's style."""
    config = module.config_for_parsing if module is not None else cst.PartialParserConfig()
    return list(cst.parse_module(code, config=config).body)


def parse_expr(code: str) -> cst.BaseExpression:
    return cst.parse_expression(code)


def code_of(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)


def kwarg(call: cst.Call, name: str) -> cst.Arg | None:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg
    return None


def kwarg_code(call: cst.Call, name: str) -> str | None:
    arg = kwarg(call, name)
    return None if arg is None else code_of(arg.value).strip()


def append_arg(call: cst.Call, arg: cst.Arg) -> cst.Call:
    """``call`` with ``arg`` appended in the call's own layout (one per line stays one per line)."""
    args = list(call.args)
    if not args:
        return call.with_changes(args=[arg])
    last = args[-1]
    multiline = "\n" in code_of(call)
    if isinstance(last.comma, cst.Comma):                   # trailing comma
        if len(args) > 1 and isinstance(args[-2].comma, cst.Comma):
            sep = args[-2].comma
        else:
            sep = cst.Comma(whitespace_after=call.whitespace_before_args if multiline
                            else cst.SimpleWhitespace(" "))
        args[-1] = last.with_changes(comma=sep)
        args.append(arg.with_changes(comma=last.comma))
    else:
        if len(args) > 1 and isinstance(args[-2].comma, cst.Comma):
            sep = args[-2].comma
        elif multiline and isinstance(call.whitespace_before_args, cst.ParenthesizedWhitespace):
            sep = cst.Comma(whitespace_after=call.whitespace_before_args)
        else:
            sep = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        args[-1] = last.with_changes(comma=sep, whitespace_after_arg=cst.SimpleWhitespace(""))
        args.append(arg.with_changes(whitespace_after_arg=last.whitespace_after_arg))
    # keyword arguments go before a trailing **kwargs only when that is the last argument
    return call.with_changes(args=args)


def set_kwarg(call: cst.Call, name: str, value_code: str) -> cst.Call:
    """``call`` with keyword ``name=value_code``: replaced when present, appended otherwise."""
    value = parse_expr(value_code)
    for i, arg in enumerate(call.args):
        if arg.keyword is not None and arg.keyword.value == name:
            args = list(call.args)
            args[i] = arg.with_changes(value=value)
            return call.with_changes(args=args)
    new = cst.Arg(value=value, keyword=cst.Name(name),
                  equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                        whitespace_after=cst.SimpleWhitespace("")))
    return append_arg(call, new)


def call_names(node: cst.CSTNode) -> Iterable[cst.Call]:
    """Every Call inside ``node`` (including itself)."""
    found: list[cst.Call] = []

    class _V(cst.CSTVisitor):
        def visit_Call(self, n: cst.Call) -> None:
            found.append(n)

    node.visit(_V())
    return found


def names_in(node: cst.CSTNode) -> set[str]:
    found: set[str] = set()

    class _V(cst.CSTVisitor):
        def visit_Name(self, n: cst.Name) -> None:
            found.add(n.value)

    node.visit(_V())
    return found


def assigned_names(stmt: cst.CSTNode) -> set[str]:
    """Names bound by the assignments of a simple statement line (``a, b = ...``, ``a += ...``)."""
    out: set[str] = set()
    if not isinstance(stmt, cst.SimpleStatementLine):
        return out
    for small in stmt.body:
        targets: list[cst.BaseExpression] = []
        if isinstance(small, cst.Assign):
            targets = [t.target for t in small.targets]
        elif isinstance(small, (cst.AnnAssign, cst.AugAssign)):
            targets = [small.target]
        for t in targets:
            _collect_targets(t, out)
    return out


def _collect_targets(t: cst.BaseExpression, out: set[str]) -> None:
    if isinstance(t, cst.Name):
        out.add(t.value)
    elif isinstance(t, (cst.Tuple, cst.List)):
        for el in t.elements:
            _collect_targets(el.value, out)
    elif isinstance(t, cst.StarredElement):
        _collect_targets(t.value, out)


def attr_chain(node: cst.BaseExpression) -> str | None:
    """``self.model.layers`` -> "self.model.layers"; None for anything but names and attributes."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = attr_chain(node.value)
        return None if base is None else f"{base}.{node.attr.value}"
    return None


def method_call(node: cst.CSTNode, method: str) -> cst.Call | None:
    """The call when ``node`` is ``<receiver>.<method>(...)``."""
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == method:
        return node
    return None


def expr_stmt_call(stmt: cst.CSTNode) -> cst.Call | None:
    """The call of a statement line that is just ``f(...)``."""
    if (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1
            and isinstance(stmt.body[0], cst.Expr) and isinstance(stmt.body[0].value, cst.Call)):
        return stmt.body[0].value
    return None


# --------------------------------------------------------------------------- script facts


class ScriptInfo:
    """What a script says, read from the ``ModuleFacts`` of one module version (shared by the
    tweaks that run on that version; qualified names are resolved only when asked for)."""

    def __init__(self, facts: ModuleFacts) -> None:
        self.facts = facts
        self.module = facts.module
        self.calls: list[cst.Call] = list(facts.of_type(cst.Call))
        self.class_defs: list[cst.ClassDef] = list(facts.of_type(cst.ClassDef))
        self.func_defs: list[cst.FunctionDef] = list(facts.of_type(cst.FunctionDef))

    @property
    def code(self) -> str:
        """The module's source text."""
        return self.facts.code

    def assigns(self) -> list[cst.Assign]:
        """Every ``a = b`` statement part, in source order."""
        return self.facts.of_type(cst.Assign)

    def names(self) -> set[str]:
        """Every identifier the script uses (``names_in(module)``)."""
        return {n.value for n in self.facts.of_type(cst.Name)}

    def calls_in(self, node: cst.CSTNode) -> list[cst.Call]:
        """``call_names(node)``, without a visit when ``node`` is the module."""
        return self.calls if node is self.module else list(call_names(node))

    # ---- metadata
    def qnames(self, node: cst.CSTNode) -> frozenset[str]:
        return self.facts.qnames(node)

    def line(self, node: cst.CSTNode) -> int:
        return self.facts.line(node)

    def parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self.facts.parent(node)

    def ancestors(self, node: cst.CSTNode) -> Iterable[cst.CSTNode]:
        p = self.parent(node)
        while p is not None:
            yield p
            p = self.parent(p)

    def stmt_of(self, node: cst.CSTNode) -> cst.BaseStatement:
        """The statement of a block (Module or IndentedBlock body) that holds ``node``."""
        cur = node
        while True:
            par = self.parent(cur)
            if par is None or isinstance(par, (cst.Module, cst.IndentedBlock)):
                return cur  # type: ignore[return-value]
            cur = par

    def block_of(self, stmt: cst.CSTNode) -> cst.Module | cst.IndentedBlock | None:
        par = self.parent(stmt)
        return par if isinstance(par, (cst.Module, cst.IndentedBlock)) else None

    def enclosing(self, node: cst.CSTNode, types: tuple[type, ...]) -> list[cst.CSTNode]:
        return [a for a in self.ancestors(node) if isinstance(a, types)]

    def func_of(self, node: cst.CSTNode) -> cst.FunctionDef | None:
        found = self.enclosing(node, (cst.FunctionDef,))
        return found[0] if found else None  # type: ignore[return-value]

    # ---- call matching
    def is_call_to(self, call: cst.Call, names: Iterable[str]) -> bool:
        names = tuple(names)
        return any(q in names for q in self.qnames(call.func))

    def calls_to(self, names: Iterable[str]) -> list[cst.Call]:
        names = tuple(names)
        if not self.facts.mentions(*(last_part(n) for n in names)):
            return []       # no qualified name can end so: skips the scope analysis
        return [c for c in self.calls if self.is_call_to(c, names)]

    def calls_of(self, kind: str) -> list[cst.Call]:
        """Calls of one kind of library object in the shared vocabulary (``ccprof.script.names``,
        which the profiler's static facts read too): ``calls_of("autocast")``."""
        name = NAMES[kind]
        return self.calls_matching(name.match, needs=name.lasts)

    def is_of(self, call: cst.Call, kind: str) -> bool:
        """Whether ``call`` calls a ``kind`` of library object (``ccprof.script.names``)."""
        return any(matches(kind, q) for q in self.qnames(call.func))

    def calls_matching(self, pred: Callable[[str], bool], needs: Iterable[str] = ()) -> list[cst.Call]:
        """Calls with a qualified name ``pred`` accepts. ``needs``: words one of which is part of
        any name ``pred`` accepts (a module or class name); a script that has none of them in
        its text has no such call, and that is known without resolving names."""
        needs = tuple(needs)
        if needs and not self.facts.mentions(*needs):
            return []
        return [c for c in self.calls if any(pred(q) for q in self.qnames(c.func))]

    def method_calls(self, method: str) -> list[cst.Call]:
        return [c for c in self.calls if method_call(c, method) is not None]

    # ---- frameworks
    def training_args_calls(self) -> list[cst.Call]:
        return self.calls_of("training_arguments")

    def hf_trainer_calls(self) -> list[cst.Call]:
        return self.calls_of("hf_trainer")

    def lightning_trainer_calls(self) -> list[cst.Call]:
        return self.calls_of("lightning_trainer")

    def lightning_root(self) -> str:
        """The package the script imports Lightning from ("lightning.pytorch" or "pytorch_lightning")."""
        for c in self.lightning_trainer_calls():
            for q in self.qnames(c.func):
                if q.startswith("pytorch_lightning"):
                    return "pytorch_lightning"
        return "lightning.pytorch"

    @property
    def kind(self) -> str:
        if self.training_args_calls() or self.hf_trainer_calls():
            return "hf_trainer"
        if self.lightning_trainer_calls():
            return "lightning"
        return "plain"

    def uses_accelerate(self) -> bool:
        return bool(self.calls_of("accelerate"))

    # ---- plain loops
    def optimizer_calls(self) -> list[cst.Call]:
        return self.calls_of("optimizer")

    def optimizer_class(self, call: cst.Call) -> str:
        for q in self.qnames(call.func):
            return last_part(q)
        return ""

    def optimizer_assigns(self) -> list[tuple[cst.BaseStatement, str, cst.Call]]:
        """(statement, bound name, constructor call) for ``opt = torch.optim.X(...)``."""
        out = []
        for call in self.optimizer_calls():
            stmt = self.stmt_of(call)
            names = sorted(assigned_names(stmt))
            out.append((stmt, names[0] if len(names) == 1 else "", call))
        return out

    def optimizer_names(self) -> set[str]:
        names = {n for _, n, _ in self.optimizer_assigns() if n}
        # an optimizer handed to a function (``def train(model, optimizer)``) still has zero_grad()
        for c in self.method_calls("zero_grad"):
            recv = c.func.value  # type: ignore[union-attr]
            if isinstance(recv, cst.Name) and recv.value not in self.model_names():
                names.add(recv.value)
        return names

    def scaler_names(self) -> set[str]:
        out = set()
        for c in self.calls_of("grad_scaler"):
            out |= assigned_names(self.stmt_of(c))
        return out

    def scheduler_names(self) -> set[str]:
        out = set()
        for c in self.calls_matching(lambda q: "lr_scheduler" in q or "get_scheduler" in q
                                     or q.startswith("transformers.get_") and "schedule" in q,
                                     needs=("lr_scheduler", "get_scheduler", "transformers")):
            out |= assigned_names(self.stmt_of(c))
        return out

    def model_names(self) -> set[str]:
        """Names whose ``.parameters()`` feed an optimizer, or that a Trainer trains."""
        out: set[str] = set()
        for call in self.optimizer_calls():
            for inner in call_names(call):
                if method_call(inner, "parameters") or method_call(inner, "named_parameters"):
                    recv = inner.func.value  # type: ignore[union-attr]
                    if isinstance(recv, cst.Name):
                        out.add(recv.value)
        for call in self.hf_trainer_calls():
            arg = kwarg(call, "model")
            if arg is not None and isinstance(arg.value, cst.Name):
                out.add(arg.value.value)
        return out

    def backward_calls(self) -> list[cst.Call]:
        """``<tensor>.backward()`` calls (not ``accelerator.backward(loss)``)."""
        out = []
        for c in self.method_calls("backward"):
            if any(a.keyword is None for a in c.args):
                continue
            out.append(c)
        return out

    def module_level_names(self) -> set[str]:
        out: set[str] = set()
        for stmt in self.module.body:
            out |= assigned_names(stmt)
            if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
                out.add(stmt.name.value)
            if isinstance(stmt, cst.If):                       # if __name__ == "__main__": ...
                for inner in stmt.body.body:
                    out |= assigned_names(inner)
        return out

    def visible_names(self, node: cst.CSTNode) -> set[str]:
        """Names bound in the function holding ``node`` (parameters, assignments) and at module level."""
        out = self.module_level_names()
        func = self.func_of(node)
        while func is not None:
            for p in func.params.params + func.params.kwonly_params + func.params.posonly_params:
                out.add(p.name.value)
            for c in _walk_stmts(func.body):
                out |= assigned_names(c)
                if isinstance(c, cst.For):
                    _collect_targets(c.target, out)
                if isinstance(c, cst.With):
                    for item in c.items:
                        if item.asname is not None:
                            _collect_targets(item.asname.name, out)
            func = self.func_of(func)
        return out

    def model_device_expr(self, model: str, at: cst.CSTNode) -> str | None:
        """The expression the script moves ``model`` to (``model.to(args.device)``), if visible at ``at``."""
        visible = self.visible_names(at)
        for c in self.method_calls("to"):
            if not c.args or c.args[0].keyword is not None:
                continue
            stmt = self.stmt_of(c)
            recv = c.func.value  # type: ignore[union-attr]
            if model in assigned_names(stmt) or (isinstance(recv, cst.Name) and recv.value == model):
                expr = c.args[0].value
                chain = attr_chain(expr)
                if chain is not None and chain.split(".")[0] in visible:
                    return code_of(expr).strip()
        if "device" in visible:
            return "device"
        return None

    def nn_module_classes(self) -> list[cst.ClassDef]:
        """Classes of this script that subclass torch.nn.Module or a LightningModule."""
        out = []
        for cd in self.class_defs:
            for base in cd.bases:
                qs = self.qnames(base.value)
                if any(q.startswith("torch.nn") or last_part(q) in ("Module", "LightningModule") for q in qs):
                    out.append(cd)
                    break
            else:
                # a subclass of another model class of this script
                known = {c.name.value for c in out}
                if any(isinstance(b.value, cst.Name) and b.value.value in known for b in cd.bases):
                    out.append(cd)
        return out

    def hf_model_calls(self) -> list[cst.Call]:
        """Calls that build a transformers model: ``AutoModelForX.from_pretrained``, ``LlamaForCausalLM(cfg)``."""
        def is_model(q: str) -> bool:
            parts = q.split(".")
            if parts[0] not in ("transformers",):
                return False
            name = parts[-1]
            cls = parts[-2] if name in ("from_pretrained", "from_config") else name
            if name not in ("from_pretrained", "from_config") and q.count(".") < 1:
                return False
            return bool(re.match(r"^(Auto\w*Model\w*|\w+Model|\w+For[A-Z]\w+)$", cls)) and "Config" not in cls \
                and "Tokenizer" not in cls and "Processor" not in cls
        return self.calls_matching(is_model, needs=("transformers",))

    def hf_task_type(self) -> str | None:
        for call in self.hf_model_calls():
            text = " ".join(self.qnames(call.func))
            for key, task in (("CausalLM", "CAUSAL_LM"), ("Seq2SeqLM", "SEQ_2_SEQ_LM"),
                              ("SequenceClassification", "SEQ_CLS"), ("TokenClassification", "TOKEN_CLS"),
                              ("QuestionAnswering", "QUESTION_ANS")):
                if key in text:
                    return task
        return None


def _walk_stmts(node: cst.CSTNode) -> list[cst.CSTNode]:
    found: list[cst.CSTNode] = []

    class _V(cst.CSTVisitor):
        def visit_SimpleStatementLine(s, n):
            found.append(n)

        def visit_For(s, n):
            found.append(n)

        def visit_With(s, n):
            found.append(n)

        def visit_FunctionDef(s, n):
            return n is node or False

    node.visit(_V())
    return found


# --------------------------------------------------------------------------- base class


class TweakCodemod(CodemodCommand):
    """One tweak's rewrite. Subclasses set ``tweak`` and implement ``plan(info, edits)``.

    ``plan`` records changes in ``edits``, adds imports with ``self.need_import``, and raises
    ``Skip`` or ``AlreadyApplied`` instead of changing nothing silently.
    """

    tweak: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""
    # No libcst metadata providers: ``ScriptInfo`` reads a ``ModuleFacts`` (parents, lines,
    # qualified names), which ``apply_source`` shares between the tweaks of one module version.
    METADATA_DEPENDENCIES = ()

    def __init__(self, context: CodemodContext, options: TweakOptions | dict[str, Any] | None = None) -> None:
        super().__init__(context)
        # the tweak's typed options (ccprof.artefacts.tweaks); a field left None takes the
        # codemod's default, given where it is read
        self.options = options_for(self.tweak, options)
        self.notes: list[str] = []

    def plan(self, info: ScriptInfo, edits: Edits) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def rewrite(self, facts: ModuleFacts) -> cst.Module:
        """The module of ``facts`` with this tweak, imports included; raises ``Skip`` or
        ``AlreadyApplied``. Unchanged subtrees are shared with ``facts.module``."""
        info = ScriptInfo(facts)
        if info.uses_accelerate():
            raise Skip("this is an Accelerate script (looked for plain torch calls, found "
                       "`accelerate.Accelerator`): set the tweak on `Accelerator(...)` instead")
        edits = Edits()
        self.plan(info, edits)
        if not edits:
            raise AlreadyApplied("nothing to change")
        tree = edits.apply(facts.module, facts.parent)
        if AddImportsVisitor.CONTEXT_KEY in self.context.scratch:
            tree = add_needed_imports(self.context, tree)
        if RemoveImportsVisitor.CONTEXT_KEY in self.context.scratch:   # no codemod asks for it yet
            tree = RemoveImportsVisitor(self.context).transform_module(tree)
        return tree

    def transform_module(self, tree: cst.Module) -> cst.Module:
        """libcst's entry point (a whole-module pass per metadata provider) replaced by
        ``rewrite`` on the facts of ``tree``."""
        return self.rewrite(ModuleFacts(tree))

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        return self.rewrite(ModuleFacts(tree))

    def need_import(self, module: str, obj: str | None = None, asname: str | None = None) -> None:
        AddImportsVisitor.add_needed_import(self.context, module, obj, asname)

    def opt(self, name: str, default: Any) -> Any:
        """Option field ``name`` of this tweak, or ``default`` when it is not set."""
        value = getattr(self.options, name)
        return default if value is None else value


def after_imports_anchor(module: cst.Module) -> cst.BaseStatement | None:
    """The last statement of the module's opening run of docstring, imports and try-imports."""
    anchor = None
    for stmt in module.body:
        if isinstance(stmt, cst.SimpleStatementLine) and all(
                isinstance(s, (cst.Import, cst.ImportFrom)) for s in stmt.body):
            anchor = stmt
            continue
        if isinstance(stmt, cst.SimpleStatementLine) and anchor is None and m.matches(
                stmt, m.SimpleStatementLine(body=[m.Expr(value=m.SimpleString() | m.ConcatenatedString())])):
            anchor = stmt
            continue
        if isinstance(stmt, cst.Try) and all(
                isinstance(s, cst.SimpleStatementLine) and all(isinstance(x, (cst.Import, cst.ImportFrom)) for x in s.body)
                for s in stmt.body.body):
            anchor = stmt
            continue
        break
    return anchor


def insert_after_imports(info: ScriptInfo, edits: Edits, stmts: list[cst.BaseStatement]) -> None:
    """Put ``stmts`` after the script's imports (a blank line before them)."""
    anchor = after_imports_anchor(info.module)
    if stmts:
        stmts = [stmts[0].with_changes(leading_lines=[cst.EmptyLine(), *stmts[0].leading_lines])] + list(stmts[1:])
    if anchor is None:
        first = info.module.body[0] if info.module.body else None
        if first is None:
            raise Skip("the script is empty")
        edits.insert_before(first, stmts)
    else:
        edits.insert_after(anchor, stmts)


def _is_import_line(stmt: cst.CSTNode) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and isinstance(
        stmt.body[0], (cst.Import, cst.ImportFrom))


def add_needed_imports(context: CodemodContext, module: cst.Module) -> cst.Module:
    """What ``AddImportsVisitor`` does to ``module``, run on its head only.

    The visitor reads and changes only the module's opening run of statements (a docstring,
    the imports) and the first statement after them (a blank line before it), so it runs on a
    module of those statements, compound ones stubbed, and the rest is spliced back. On a long
    script that saves two whole-tree passes and a deep copy, and the visitor's recursive
    pattern match over the whole body (a RecursionError past ~1,000 top-level statements).
    """
    body = list(module.body)
    head: list[cst.BaseStatement] = []
    stubs: dict[str, cst.BaseStatement] = {}
    for i, stmt in enumerate(body):
        if isinstance(stmt, cst.SimpleStatementLine):
            head.append(stmt)
        else:                       # a def/class/loop: a one-line stand-in with its leading lines
            name = f"__ccprof_stub_{i}__"
            stubs[name] = stmt
            head.append(cst.SimpleStatementLine(body=[cst.Expr(cst.Name(name))], leading_lines=stmt.leading_lines))
        if i >= 1 and not _is_import_line(stmt) or i == 0 and not isinstance(stmt, cst.SimpleStatementLine):
            break
    rest = body[len(head):]
    stub = module.with_changes(body=head)
    new_head = AddImportsVisitor(context).transform_module(stub)
    if new_head.deep_equals(stub):
        return module                   # every import is there already
    out: list[cst.BaseStatement] = []
    for stmt in new_head.body:
        name = _stub_name(stmt)
        if name in stubs:
            orig = stubs[name]
            lines = stmt.leading_lines
            same = len(lines) == len(orig.leading_lines) and all(
                a.deep_equals(b) for a, b in zip(lines, orig.leading_lines))
            stmt = orig if same else orig.with_changes(leading_lines=lines)
        out.append(stmt)
    return module.with_changes(body=[*out, *rest])


def _stub_name(stmt: cst.CSTNode) -> str | None:
    if (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and isinstance(stmt.body[0], cst.Expr)
            and isinstance(stmt.body[0].value, cst.Name)):
        return stmt.body[0].value.value
    return None
