"""``ScriptInfo``: what a script says, for every reader of it (the codemods and the fact readers
of ``ccprof.script``), read from one ``ModuleFacts`` (parents, lines, qualified names) and the
shared vocabulary of library names (``ccprof.script.names``)."""
from __future__ import annotations

import re
from typing import Callable, Iterable

import libcst as cst

from ccprof.script.facts import ModuleFacts
from ccprof.script.names import NAMES, matches
from ccprof.script.nodes import (
    assigned_names,
    attr_chain,
    binds,
    call_names,
    code_of,
    kwarg,
    last_part,
    method_call,
)

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

    def stmt_at(self, line: int) -> cst.BaseStatement | None:
        """The innermost statement of a block that holds source line ``line`` (a frame's line, as
        the run recorded it: ``CallSite.line``); a compound statement only when the line is the first
        of its header (``for x in model(y):``). None when no statement spans that line.

        Example: ``info.stmt_at(262)`` is ``output = model(*input)`` in ``train_iter``."""
        found: cst.BaseStatement | None = None
        for node in self.facts.nodes:
            if not isinstance(node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
                continue
            start = self.line(node)
            if start > line:
                break                       # source order: nothing later starts before the line
            if isinstance(node, cst.BaseCompoundStatement):
                span = 0                    # its header's first line; the body's statements are their own
            else:
                span = code_of(node.with_changes(leading_lines=[])).rstrip().count("\n")
            if start <= line <= start + span:
                found = node                # a later (inner) statement that spans it wins
        return found

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

    # ---- Hugging Face Accelerate
    def accelerator_calls(self) -> list[cst.Call]:
        """``Accelerator(...)`` calls."""
        return self.calls_of("accelerator")

    def accelerator_names(self) -> set[str]:
        """Names (and attribute chains) bound to an ``Accelerator(...)``: ``accelerator``, ``self.accelerator``."""
        calls = {id(c) for c in self.accelerator_calls()}
        out: set[str] = set()
        for n in self.assigns():
            if isinstance(n.value, cst.Call) and id(n.value) in calls:
                for t in n.targets:
                    chain = attr_chain(t.target)
                    if chain:
                        out.add(chain)
        return out

    def accelerator_backward_calls(self) -> list[cst.Call]:
        """``accelerator.backward(loss)`` calls on a name bound to an ``Accelerator(...)``."""
        names = self.accelerator_names()
        return [c for c in self.method_calls("backward")
                if any(a.keyword is None for a in c.args) and attr_chain(c.func.value) in names]  # type: ignore[union-attr]

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
                out |= binds(c)
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
