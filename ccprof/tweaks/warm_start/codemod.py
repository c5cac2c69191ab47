"""warm_start: freeze the embeddings (and load pretrained vectors when given) before the
optimizer is built.

Transformers models: ``model.get_input_embeddings()``; custom models: every
``torch.nn.Embedding`` of the model. Options: ``embeddings_path`` (a ``torch.save``d tensor
of shape (vocab, dim)) and, for custom models, ``embedding_module`` (its dotted name,
e.g. "wte") to load it into.
"""
from __future__ import annotations

from ccprof.applier.codemods import register
from ccprof.applier.codemods._base import AlreadyApplied, Skip, TweakCodemod
from ccprof.applier.codemods._cst import Edits, code_of, parse_stmts
from ccprof.applier.codemods._model import model_insertion
from ccprof.script.info import ScriptInfo

__all__ = ["WarmStart"]


@register("warm_start")
class WarmStart(TweakCodemod):
    DESCRIPTION = "Warm-start and freeze the embeddings."

    def plan(self, info: ScriptInfo, edits: Edits) -> None:
        for c in info.method_calls("requires_grad_"):
            stmt = info.stmt_of(c)
            if "mbed" in code_of(stmt):
                raise AlreadyApplied(f"line {info.line(c)} freezes the embeddings")
        if info.kind == "lightning":
            raise Skip("looked for a plain loop or HF Trainer; in a LightningModule freeze the embeddings "
                       "in `__init__` (`self.model.get_input_embeddings().weight.requires_grad_(False)`)")
        stmt, name = model_insertion(info)
        path = self.opt("vectors_path")
        lines = []
        if info.hf_model_calls():
            if path:
                lines.append(f"{name}.get_input_embeddings().weight.data.copy_(torch.load({path!r}))  # pretrained vectors")
            lines.append(f"{name}.get_input_embeddings().weight.requires_grad_(False)  # frozen embeddings")
        else:
            if not info.calls_to(("torch.nn.Embedding", "torch.nn.modules.sparse.Embedding")):
                raise Skip("looked for `nn.Embedding(...)` in the script's model classes and for a "
                           "transformers model; found neither")
            module = self.opt("embedding_module")
            if path and module:
                lines.append(f"{name}.get_submodule({module!r}).weight.data.copy_(torch.load({path!r}))"
                             "  # pretrained vectors")
            elif path:
                self.notes.append("embeddings_path given without embedding_module: embeddings frozen, not loaded")
            lines += [f"for embedding in {name}.modules():  # frozen embeddings",
                      "    if isinstance(embedding, torch.nn.Embedding):",
                      "        embedding.weight.requires_grad_(False)"]
            self.notes.append("weights tied to an embedding (a GPT output head) are frozen with it")
        edits.insert_before(stmt, parse_stmts("\n".join(lines) + "\n", info.module))
        self.need_import("torch")
