"""warm_start: load pretrained vectors into the token embedding and freeze it, before the
optimizer is built.

Transformers models: ``model.get_input_embeddings()``; custom models: the module named by
``embedding_module`` (e.g. "wte"), else the first embedding the advice names. The vectors come
from ``embeddings_path`` (a ``torch.save``d tensor of shape (vocab, dim)); without it the rewrite
is refused, since freezing randomly initialised embeddings would fix them at noise. A weight tied
to the embedding (a GPT output head) is frozen with it; the notes say so.
"""
from __future__ import annotations

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import AlreadyApplied, Skip, TweakCodemod
from ccprof.applier.codemods._cst import Edits, code_of, parse_stmts
from ccprof.applier.codemods._model import model_insertion
from ccprof.script.info import ScriptInfo

__all__ = ["WarmStart"]

NEEDS_VECTORS = ("needs pretrained vectors to load: give --option embeddings_path=<a torch.save'd (vocab, dim) "
                 "tensor> (the input embeddings of a published checkpoint whose vocabulary and width match, or word "
                 "vectors mapped to your vocabulary); freezing randomly initialised embeddings would fix them at noise")


@register("warm_start")
class WarmStart(TweakCodemod):
    DESCRIPTION = "Load pretrained vectors into the embeddings and freeze them."

    def plan(self, info: ScriptInfo, edits: Edits) -> None:
        for c in info.method_calls("requires_grad_"):
            stmt = info.stmt_of(c)
            if "mbed" in code_of(stmt):
                raise AlreadyApplied(f"line {info.line(c)} freezes the embeddings")
        if info.kind == "lightning":
            raise Skip("looked for a plain loop or HF Trainer; in a LightningModule load the vectors and freeze the "
                       "embeddings in `__init__` (`self.model.get_input_embeddings().weight.requires_grad_(False)`)")
        path = self.opt("vectors_path")
        hf = bool(info.hf_model_calls())
        if not hf and not info.calls_to(("torch.nn.Embedding", "torch.nn.modules.sparse.Embedding")):
            raise Skip("looked for `nn.Embedding(...)` in the script's model classes and for a "
                       "transformers model; found neither")
        if not path:
            raise Skip(NEEDS_VECTORS)
        stmt, name = model_insertion(info)
        if hf:
            table = f"{name}.get_input_embeddings()"
        else:
            module = self.opt("embedding_module") or next(iter(self.opt("embeddings") or []), None)
            if not module:
                raise Skip("which embedding the vectors load into is not known: give --option "
                           "embedding_module=<its name, e.g. wte>")
            table = f"{name}.get_submodule({module!r})"
        lines = [f"{table}.weight.data.copy_(torch.load({path!r}))  # pretrained vectors",
                 f"{table}.weight.requires_grad_(False)  # frozen embeddings"]
        self.notes.append("a weight tied to the embedding (a GPT output head) is frozen with it")
        edits.insert_before(stmt, parse_stmts("\n".join(lines) + "\n", info.module))
        self.need_import("torch")
