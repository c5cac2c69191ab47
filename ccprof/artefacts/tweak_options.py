"""Each tweak's typed options: one dataclass per tweak, one field per option, and for each
field its one default (``opt(default=...)``), used by every stage: the advisor projects with it,
advice.json stores the fields set, the runtime applier gets ``runtime_kwargs()`` (the set
fields and the defaults of the others) and the codemod reads ``TweakOptions.value``.

The catalog (``ccprof/artefacts/tweaks.py``) names each tweak's options class; import them from there.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from ccprof._serde import ArtefactError, from_dict, to_dict

__all__ = ["opt", "TweakOptions", "NoOptions", "FinetuneOptions", "LoraOptions", "WarmStartOptions",
           "CheckpointingOptions", "MixedPrecisionOptions", "GradAccumulationOptions", "DistillationOptions",
           "PruningOptions", "QuantizationOptions", "EarlyStoppingOptions", "CompileOptions", "DataloaderOptions",
           "BatchSizeOptions"]


def opt(*, cli: str | None = None, runtime: str | bool = True, kind: str = "", least: Any = None,
        doc: str = "", default: Any = None) -> Any:
    """A TweakOptions field (unset: None). ``default``: the one default every stage uses when
    the field is unset (a value, or a function of the other options, such as LoRA's alpha =
    2 x rank; None: the stage decides from the run, as the doc says); ``cli``: its ``--option``
    key; ``runtime``: the runtime applier's keyword for it (True: the field's name; False: the
    runtime applier has no such option); ``kind``/``least``: how ``--option`` checks a value."""
    return field(default=None, metadata={"cli": cli, "runtime": runtime, "kind": kind, "least": least,
                                         "doc": doc, "default": default})


@dataclass(frozen=True)
class TweakOptions:
    """Base of every tweak's options: JSON round trip, the runtime keywords, and replacement."""

    tweak: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, as JSON (what advice.json stores)."""
        return {k: v for k, v in to_dict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, path: str = "options") -> "TweakOptions":
        """Rebuilt and checked (``ArtefactError`` naming ``path.field``); an unknown key is an
        error, so a misspelt or stale option is never silently dropped."""
        data = dict(data or {})
        names = {f.name for f in fields(cls)}
        for key in data:
            if key not in names:
                known = ", ".join(sorted(names)) or "none"
                raise ArtefactError(f"{path}.{key}", f"not an option of {cls.tweak} (its options: {known})")
        return from_dict(cls, data, path)

    def value(self, name: str) -> Any:
        """Field ``name``: as set, else the catalog's one default for it (None: decided from the run)."""
        value = getattr(self, name)
        return self.default(name) if value is None else value

    def default(self, name: str) -> Any:
        """The catalog's default of field ``name`` (computed from the other options where it is a function)."""
        f = next((f for f in fields(self) if f.name == name), None)
        if f is None:
            raise AttributeError(f"{self.tweak or 'this tweak'} has no option {name!r}")
        d = f.metadata.get("default")
        return d(self) if callable(d) else d

    def resolved(self) -> "TweakOptions":
        """These options with every unset field that has a default filled in."""
        return dataclasses.replace(self, **{f.name: self.value(f.name) for f in fields(self)})

    def runtime_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the runtime applier ``apply_<id>``: the fields that are set,
        and the catalog's defaults of the others (so a re-run and a rewrite use the same values)."""
        out = {}
        done = self.resolved()
        for f in fields(self):
            value, name = getattr(done, f.name), f.metadata.get("runtime", True)
            if value is None or name is False:
                continue
            out[f.name if name is True else name] = list(value) if isinstance(value, tuple) else value
        return out

    def merged(self, other: "TweakOptions | dict[str, Any] | None") -> "TweakOptions":
        """These options with the set fields of ``other`` on top (``--option`` over advice.json)."""
        if other is None:
            return self
        over = other.to_dict() if isinstance(other, TweakOptions) else dict(other)
        return dataclasses.replace(self, **{k: v for k, v in over.items() if v is not None})


@dataclass(frozen=True)
class NoOptions(TweakOptions):
    """A tweak with nothing to choose (tf32, fused_optimizer) or nothing ccprof applies for it."""


@dataclass(frozen=True)
class FinetuneOptions(TweakOptions):
    tweak: ClassVar[str] = "finetune"
    # He et al., "Rethinking ImageNet Pre-training" (ICCV 2019): from scratch catches up only with
    # far longer schedules (6x in mmdetection's scratch configs), so fine-tuning is taken as 1/6
    # of the scratch run; *unverified* for any given task.
    budget_frac: float | None = opt(cli="finetune_budget", runtime=False, kind="fraction", default=1 / 6,
                                    doc="fine-tuning steps as a share of the from-scratch run (1/6)")


@dataclass(frozen=True)
class LoraOptions(TweakOptions):
    tweak: ClassVar[str] = "lora"
    # rank 8: peft's LoraConfig default r=8 (Hu et al., ICLR 2022, use r in 1..64); alpha = 2 x
    # rank (alpha = r or 2r in the paper); dropout 0: peft's LoraConfig default, and what the
    # memory projection assumes (adapter dropout keeps a mask and the dropped input per layer)
    rank: int | None = opt(cli="lora_rank", runtime="r", kind="int", least=1, doc="adapter rank (8)", default=8)
    alpha: float | None = opt(cli="lora_alpha", kind="number", least=0, doc="scale (2 x rank)",
                              default=lambda o: 2 * o.value("rank"))
    dropout: float | None = opt(cli="lora_dropout", kind="fraction", doc="adapter dropout (0)", default=0.0)
    targets: list[str] | None = opt(cli="lora_targets", runtime="target_modules", kind="names",
                                    doc="Linear layers to adapt, full names or suffixes (every block Linear)")
    keep_trainable: list[str] | None = opt(doc="modules trained in full (a fresh classifier head)")
    lr: float | None = opt(doc="learning rate of the adapters (the optimizer's)")


@dataclass(frozen=True)
class WarmStartOptions(TweakOptions):
    tweak: ClassVar[str] = "warm_start"
    embeddings: list[str] | None = opt(runtime="names", kind="names", doc="embedding modules to freeze (all)")
    vectors_path: str | None = opt(cli="embeddings_path", kind="text",
                                   doc="a torch.load-able tensor of pretrained vectors (needed to apply it)")
    embedding_module: str | None = opt(cli="embedding_module", kind="text",
                                       doc="the module the vectors load into (the token embedding)")
    freeze: bool | None = opt(runtime="freeze_embeddings", kind="bool", doc="freeze them (yes)", default=True)
    # *unverified* ccprof assumption: the share of the run spent learning what pretrained
    # embeddings already know
    run_frac: float | None = opt(runtime=False, kind="fraction", default=0.05,
                                 doc="share of the run warm-started embeddings save (0.05, an assumption)")


@dataclass(frozen=True)
class CheckpointingOptions(TweakOptions):
    tweak: ClassVar[str] = "checkpointing"
    container: str | None = opt(kind="text", doc="the ModuleList of blocks (the largest repeated one)")


@dataclass(frozen=True)
class MixedPrecisionOptions(TweakOptions):
    tweak: ClassVar[str] = "mixed_precision"
    dtype: str | None = opt(cli="dtype", kind="choice", least=("bf16", "fp16"),
                            doc="bf16 or fp16 (bf16 where the GPU has it)")
    loss_scaling: bool | None = opt(kind="bool", doc="dynamic loss scaling (on with fp16, off with bf16)")


@dataclass(frozen=True)
class GradAccumulationOptions(TweakOptions):
    tweak: ClassVar[str] = "grad_accumulation"
    steps: int | None = opt(cli="accumulation_steps", runtime="micro_batches", kind="int", least=1,
                            doc="micro-batches per optimizer step (4)", default=4)


@dataclass(frozen=True)
class DistillationOptions(TweakOptions):
    tweak: ClassVar[str] = "distillation"
    # every 2nd block: DistilBERT's student has half of BERT-base's layers (Sanh et al. 2019);
    # alpha 0.5: DistilBERT weighs its losses about equally; T = 2 (Hinton et al. 2015 use 1..20)
    keep_every: int | None = opt(kind="int", least=1, doc="the student keeps blocks 0, k, 2k ... (2)", default=2)
    keep: list[int] | None = opt(kind="ints", doc="the block indices the student keeps")
    alpha: float | None = opt(kind="fraction", doc="weight of the script's own loss (0.5)", default=0.5)
    temperature: float | None = opt(kind="number", least=0, doc="softmax temperature (2)", default=2.0)


@dataclass(frozen=True)
class PruningOptions(TweakOptions):
    tweak: ClassVar[str] = "pruning"
    # 30% of each weight: a ccprof assumption (lottery tickets prune >90% unstructured;
    # structured pruning tolerates less)
    method: str | None = opt(kind="choice", least=("l1_unstructured", "ln_structured", "2:4"),
                             doc="l1_unstructured, ln_structured or 2:4 (l1_unstructured)", default="l1_unstructured")
    amount: float | None = opt(kind="fraction", doc="share of each weight removed (0.3)", default=0.3)
    targets: list[str] | None = opt(kind="names", doc="Linear layers (those of the repeated blocks)")


@dataclass(frozen=True)
class QuantizationOptions(TweakOptions):
    tweak: ClassVar[str] = "quantization"
    bits: int | None = opt(kind="int", least=4, doc="8 or 4 (8)", default=8)
    group_size: int | None = opt(kind="int", least=1, doc="weights per scale (64, QLoRA's block)", default=64)
    targets: list[str] | None = opt(kind="names", doc="Linear layers (every frozen one)")
    freeze_targets: bool | None = opt(kind="bool", doc="freeze the targets first (no)", default=False)


@dataclass(frozen=True)
class EarlyStoppingOptions(TweakOptions):
    tweak: ClassVar[str] = "early_stopping"
    # patience 3: Lightning EarlyStopping's default; Prechelt (1998) for the criteria
    patience: int | None = opt(cli="patience", runtime=False, kind="int", least=1,
                               doc="validations without improvement before stopping (3)", default=3)


@dataclass(frozen=True)
class CompileOptions(TweakOptions):
    tweak: ClassVar[str] = "compile"
    backend: str | None = opt(kind="text", doc="torch.compile backend (inductor)", default="inductor")
    mode: str | None = opt(kind="text", doc="torch.compile mode (default)")
    fullgraph: bool | None = opt(kind="bool", doc="no graph breaks allowed (no)", default=False)
    dynamic: bool | None = opt(kind="bool", doc="dynamic shapes (torch's choice)")


@dataclass(frozen=True)
class DataloaderOptions(TweakOptions):
    tweak: ClassVar[str] = "dataloader"
    # 4 workers: PyTorch's performance tuning guide's starting point (a few workers per GPU hide
    # most loading; more help only when decoding is heavy), https://pytorch.org/tutorials/recipes/recipes/tuning_guide.html
    num_workers: int | None = opt(cli="num_workers", kind="int", least=0,
                                  doc="worker processes (4; a re-run uses at most its CPUs - 1)", default=4)
    pin_memory: bool | None = opt(kind="bool", doc="page-locked batches (yes; a re-run pins only on CUDA)",
                                 default=True)
    persistent_workers: bool | None = opt(kind="bool", doc="keep workers between epochs (yes with workers)",
                                         default=lambda o: (o.value("num_workers") or 0) > 0)
    prefetch_factor: int | None = opt(kind="int", least=1, doc="batches each worker loads ahead (2)")


@dataclass(frozen=True)
class BatchSizeOptions(TweakOptions):
    tweak: ClassVar[str] = "batch_size"
    batch_size: int | None = opt(cli="batch_size", kind="int", least=1,
                                 doc="the new batch (the largest that fits, at most 8 x the old and the training set)")
    factor: float | None = opt(kind="number", least=0, doc="or: the old batch times this")
    # the contract of the larger batch: "samples" keeps the run's samples (steps / k, the usual
    # way a larger batch is used; Goyal et al. 2017 keep the epochs), "steps" keeps its steps (k x
    # the samples, epochs x k): the advice's dollars and the rewrite's limits follow it
    keep: str | None = opt(cli="batch_keep", runtime=False, kind="choice", least=("samples", "steps"),
                           default="samples",
                           doc="samples: same samples, steps / k (default); steps: same steps, k x the samples")
    # linear: Goyal et al. 2017 (SGD, arXiv 1706.02677); sqrt: Malladi et al. 2022 (Adam and
    # RMSprop, NeurIPS 2022, arXiv 2205.10287); none: keep the learning rate
    lr_rule: str | None = opt(cli="batch_lr_rule", kind="choice", least=("linear", "sqrt", "none"),
                              doc="learning rate x k (linear), x sqrt(k) (sqrt) or kept (none); "
                                  "by the optimizer: linear for SGD, sqrt for Adam-type, else none")
