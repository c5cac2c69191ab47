"""The tweak catalog: one entry per id, with the stages that id has and its typed options.

One id names the same thing everywhere (advisor, options, runtime applier, codemod, test
file, report anchor). Each entry says which stages exist for it (every id has an advisor; a
runtime applier for ``--verify``; a codemod for ``ccprof apply``) and carries the dataclass of
its options. An option has one name, the field's, through every stage:

- the advisor fills it with what it projected (``GradAccumulationOptions(steps=4)``);
- advice.json stores it (``Advice.options``, validated on load against the dataclass);
- the runtime applier takes ``options.runtime_kwargs()`` (``apply_grad_accumulation(micro_batches=4)``);
- the codemod reads the fields (``self.options.steps``);
- ``ccprof apply --option`` sets a field by its ``cli`` key (``accumulation_steps=8``) or as
  ``<tweak>.<field>=...`` (``grad_accumulation.steps=8``).

A field left ``None`` means "that stage's default" (given in each stage's docstring).
``tests/test_tweak_options.py`` walks every id through advisor -> advice.json -> runtime -> codemod.

Example::

    from ccprof.artefacts.tweaks import TWEAKS, options_for
    TWEAKS["lora"].runtime, TWEAKS["lora"].codemod          # True, True
    o = options_for("lora", {"rank": 16, "targets": ["blocks.0.attn.c_attn"]})
    o.runtime_kwargs()                                      # {"r": 16, "target_modules": [...]}
"""
from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from ccprof._serde import ArtefactError, from_dict, to_dict
from ccprof.artefacts.vocab import normalize_dtype

__all__ = ["TweakInfo", "TWEAKS", "TWELVE", "MORE", "APPLY_ORDER", "TweakOptions", "NoOptions", "LoraOptions",
           "WarmStartOptions", "CheckpointingOptions", "MixedPrecisionOptions", "GradAccumulationOptions",
           "DistillationOptions", "PruningOptions", "QuantizationOptions", "EarlyStoppingOptions",
           "CompileOptions", "DataloaderOptions", "BatchSizeOptions", "options_for", "runtime_ids", "measurable_here",
           "codemod_ids", "describe", "cli_options", "option_key", "parse_option"]


def opt(*, cli: str | None = None, runtime: str | bool = True, kind: str = "", least: Any = None,
        doc: str = "") -> Any:
    """A TweakOptions field (default None: the stage's default). ``cli``: its ``--option`` key;
    ``runtime``: the runtime applier's keyword for it (True: the field's name; False: the
    runtime applier has no such option); ``kind``/``least``: how ``--option`` checks a value."""
    return field(default=None, metadata={"cli": cli, "runtime": runtime, "kind": kind, "least": least,
                                         "doc": doc})


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

    def runtime_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the runtime applier ``apply_<id>`` for the fields that are set."""
        out = {}
        for f in fields(self):
            value, name = getattr(self, f.name), f.metadata.get("runtime", True)
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
class LoraOptions(TweakOptions):
    tweak: ClassVar[str] = "lora"
    rank: int | None = opt(cli="lora_rank", runtime="r", kind="int", least=1, doc="adapter rank (8)")
    alpha: float | None = opt(cli="lora_alpha", kind="number", least=0, doc="scale (2 x rank in the codemod, 16 at run time)")
    dropout: float | None = opt(cli="lora_dropout", kind="fraction", doc="adapter dropout (0.05 codemod, 0 at run time)")
    targets: list[str] | None = opt(cli="lora_targets", runtime="target_modules", kind="names",
                                    doc="Linear layers to adapt, full names or suffixes (every block Linear)")
    keep_trainable: list[str] | None = opt(doc="modules trained in full (a fresh classifier head)")
    lr: float | None = opt(doc="learning rate of the adapters (the optimizer's)")


@dataclass(frozen=True)
class WarmStartOptions(TweakOptions):
    tweak: ClassVar[str] = "warm_start"
    embeddings: list[str] | None = opt(runtime="names", kind="names", doc="embedding modules to freeze (all)")
    vectors_path: str | None = opt(cli="embeddings_path", runtime=False, kind="text",
                                   doc="a torch.load-able tensor of pretrained vectors (codemod)")
    embedding_module: str | None = opt(cli="embedding_module", runtime=False, kind="text",
                                       doc="the module the vectors load into (codemod)")
    freeze: bool | None = opt(runtime="freeze_embeddings", kind="bool", doc="freeze them (yes)")


@dataclass(frozen=True)
class CheckpointingOptions(TweakOptions):
    tweak: ClassVar[str] = "checkpointing"
    container: str | None = opt(kind="text", doc="the ModuleList of blocks (the largest repeated one)")


@dataclass(frozen=True)
class MixedPrecisionOptions(TweakOptions):
    tweak: ClassVar[str] = "mixed_precision"
    dtype: str | None = opt(cli="dtype", kind="choice", least=("bf16", "fp16"),
                            doc="bf16 or fp16 (bf16 where the GPU has it)")
    loss_scaling: bool | None = opt(kind="bool", doc="dynamic loss scaling (with fp16)")


@dataclass(frozen=True)
class GradAccumulationOptions(TweakOptions):
    tweak: ClassVar[str] = "grad_accumulation"
    steps: int | None = opt(cli="accumulation_steps", runtime="micro_batches", kind="int", least=1,
                            doc="micro-batches per optimizer step (4 codemod, 2 at run time)")


@dataclass(frozen=True)
class DistillationOptions(TweakOptions):
    tweak: ClassVar[str] = "distillation"
    keep_every: int | None = opt(kind="int", least=1, doc="the student keeps blocks 0, k, 2k ... (2)")
    keep: list[int] | None = opt(kind="ints", doc="the block indices the student keeps")
    alpha: float | None = opt(kind="fraction", doc="weight of the script's own loss (0.5)")
    temperature: float | None = opt(kind="number", least=0, doc="softmax temperature (2)")


@dataclass(frozen=True)
class PruningOptions(TweakOptions):
    tweak: ClassVar[str] = "pruning"
    method: str | None = opt(kind="choice", least=("l1_unstructured", "ln_structured", "2:4"),
                             doc="l1_unstructured, ln_structured or 2:4 (l1_unstructured)")
    amount: float | None = opt(kind="fraction", doc="share of each weight removed (0.3)")
    targets: list[str] | None = opt(kind="names", doc="Linear layers (those of the repeated blocks)")


@dataclass(frozen=True)
class QuantizationOptions(TweakOptions):
    tweak: ClassVar[str] = "quantization"
    bits: int | None = opt(kind="int", least=4, doc="8 or 4 (8)")
    group_size: int | None = opt(kind="int", least=1, doc="weights per scale (64, QLoRA's block)")
    targets: list[str] | None = opt(kind="names", doc="Linear layers (every frozen one)")
    freeze_targets: bool | None = opt(kind="bool", doc="freeze the targets first (no)")


@dataclass(frozen=True)
class EarlyStoppingOptions(TweakOptions):
    tweak: ClassVar[str] = "early_stopping"
    patience: int | None = opt(cli="patience", runtime=False, kind="int", least=1,
                               doc="validations without improvement before stopping (3)")


@dataclass(frozen=True)
class CompileOptions(TweakOptions):
    tweak: ClassVar[str] = "compile"
    backend: str | None = opt(kind="text", doc="torch.compile backend (inductor)")
    mode: str | None = opt(kind="text", doc="torch.compile mode (default)")
    fullgraph: bool | None = opt(kind="bool", doc="no graph breaks allowed (no)")
    dynamic: bool | None = opt(kind="bool", doc="dynamic shapes (torch's choice)")


@dataclass(frozen=True)
class DataloaderOptions(TweakOptions):
    tweak: ClassVar[str] = "dataloader"
    num_workers: int | None = opt(cli="num_workers", kind="int", least=0, doc="worker processes (4)")
    pin_memory: bool | None = opt(kind="bool", doc="page-locked batches (yes on CUDA)")
    persistent_workers: bool | None = opt(kind="bool", doc="keep workers between epochs (yes with workers)")
    prefetch_factor: int | None = opt(kind="int", least=1, doc="batches each worker loads ahead (2)")


@dataclass(frozen=True)
class BatchSizeOptions(TweakOptions):
    tweak: ClassVar[str] = "batch_size"
    batch_size: int | None = opt(cli="batch_size", kind="int", least=1, doc="the new batch (2 x the old)")
    factor: float | None = opt(kind="number", least=0, doc="or: the old batch times this")
    scale_lr: bool | None = opt(kind="bool", doc="scale the learning rate with the batch (no)")


@dataclass(frozen=True)
class TweakInfo:
    id: str
    title: str
    summary: str
    risk: str                   # none | numerics | convergence | accuracy
    options: type[TweakOptions] = NoOptions
    runtime: bool = False       # has a runtime applier (applier/runtime/<id>.py, for --verify)
    codemod: bool = False       # has a codemod (applier/codemods/<id>.py, for ccprof apply)
    no_runtime: str = ""        # why no re-run of a few steps can apply or measure it
    # what a re-run needs to measure it ("cuda": the effect exists only on an NVIDIA GPU;
    # "dataloader": it changes a torch DataLoader the run uses); see measurable_here
    runtime_needs: tuple[str, ...] = ()

    @property
    def auto_apply(self) -> bool:
        """ccprof can apply it: at run time, by a rewrite, or both."""
        return self.runtime or self.codemod


TWELVE = ("finetune", "lora", "warm_start", "checkpointing", "mixed_precision",
          "grad_accumulation", "distillation", "pruning", "quantization", "early_stopping",
          "data_curation", "distributed")
MORE = ("tf32", "compile", "fused_optimizer", "dataloader", "batch_size", "right_size_gpu")

TWEAKS: dict[str, TweakInfo] = {t.id: t for t in (
    TweakInfo("finetune", "Fine-tune a pretrained model instead of training from scratch",
              "Start from published weights of the same family; train for a fraction of the steps.", "accuracy",
              no_runtime="it starts from a pretrained checkpoint ccprof cannot choose for you: load one of the "
                         "same family with from_pretrained before training (the advice names one)"),
    TweakInfo("lora", "LoRA adapters instead of full fine-tuning",
              "Freeze the base weights; train low-rank adapters on the Linear layers.", "accuracy",
              LoraOptions, runtime=True, codemod=True),
    TweakInfo("warm_start", "Warm-start (and freeze) embeddings",
              "Load pretrained embedding vectors and stop training them.", "convergence",
              WarmStartOptions, runtime=True, codemod=True),
    TweakInfo("checkpointing", "Gradient (activation) checkpointing",
              "Keep only block boundaries; recompute the rest in backward.", "none",
              CheckpointingOptions, runtime=True, codemod=True),
    TweakInfo("mixed_precision", "Mixed precision (bf16/fp16 autocast)",
              "Run matmuls and convolutions in 16-bit with fp32 master weights.", "numerics",
              MixedPrecisionOptions, runtime=True, codemod=True),
    TweakInfo("grad_accumulation", "Gradient accumulation",
              "Reach the wanted batch with smaller micro-batches that fit in memory.", "none",
              GradAccumulationOptions, runtime=True, codemod=True),
    TweakInfo("distillation", "Distill into a smaller student",
              "Train a shallower model on the teacher's soft labels.", "accuracy",
              DistillationOptions, runtime=True),
    TweakInfo("pruning", "Pruning (structured, 2:4)",
              "Remove channels/heads, or use 2:4 sparsity on tensor cores.", "accuracy",
              PruningOptions, runtime=True),
    TweakInfo("quantization", "Quantize frozen weights (int8 / 4-bit)",
              "Store frozen base weights in 8 or 4 bits (QLoRA style).", "accuracy",
              QuantizationOptions, runtime=True),
    TweakInfo("early_stopping", "Early stopping on the validation loss",
              "Stop when the validation loss has not improved for a patience window.", "convergence",
              EarlyStoppingOptions, codemod=True,
              no_runtime="it ends the run sooner, after many epochs of validation loss that a few measured "
                         "steps never reach; `ccprof apply -t early_stopping` adds a patience check to your loop"),
    TweakInfo("data_curation", "Data curation (deduplication)",
              "Drop exact and near-duplicate examples; spend steps on new data.", "convergence",
              no_runtime="it changes which examples the run sees, so a few steps cannot show its effect: "
                         "deduplicate the dataset (the advice lists the duplicates found), then profile the new data"),
    TweakInfo("distributed", "Distributed training (DDP / FSDP)",
              "Use every visible GPU with DDP, or shard model state with FSDP.", "none", codemod=True,
              no_runtime="it needs one process per GPU from the start and a launcher (torchrun): "
                         "`ccprof apply -t distributed` rewrites the script, and --nproc N measures it"),
    TweakInfo("tf32", "TF32 matmuls", "Let fp32 matmuls use TF32 tensor cores (Ampere+).", "numerics",
              runtime=True, codemod=True, runtime_needs=("cuda",)),
    TweakInfo("compile", "torch.compile", "Fuse kernels and cut Python overhead.", "none",
              CompileOptions, runtime=True, codemod=True),
    TweakInfo("fused_optimizer", "Fused / foreach optimizer",
              "One kernel for the whole parameter update.", "none", runtime=True, codemod=True),
    TweakInfo("dataloader", "DataLoader workers and pinned memory",
              "Hide data loading behind compute.", "none", DataloaderOptions, runtime=True, codemod=True,
              runtime_needs=("dataloader",)),
    TweakInfo("batch_size", "Larger batch in the memory headroom",
              "Fill the device to raise utilization.", "convergence", BatchSizeOptions, runtime=True, codemod=True,
              runtime_needs=("dataloader",)),
    TweakInfo("right_size_gpu", "Right-size the GPU",
              "A cheaper GPU that fits the job finishes the run for fewer dollars.", "none",
              no_runtime="it changes the GPU you rent, not the script: re-project with --gpu <id>, or rerun "
                         "on the suggested GPU"),
)}

# Order in which stacked codemods apply: model surgery (checkpointing, LoRA) before the
# optimizer-facing ones, wrappers (compile, DDP) last, so each sees the previous one's code.
APPLY_ORDER = ("tf32", "warm_start", "checkpointing", "lora", "mixed_precision", "grad_accumulation",
               "batch_size", "fused_optimizer", "dataloader", "early_stopping", "compile", "distributed")
assert set(APPLY_ORDER) == {t for t, i in TWEAKS.items() if i.codemod}, "APPLY_ORDER must list every codemod"
assert all(bool(i.no_runtime) != i.runtime for i in TWEAKS.values()), "say why an id has no runtime applier"


_NEEDS = {
    "cuda": (lambda device, loader: device == "cuda",
             "its effect exists only on an NVIDIA GPU (TF32 tensor cores), and this run trained on the {device}"),
    "dataloader": (lambda device, loader: loader,
                   "the run used no torch DataLoader for it to change (its batches come from the script's own code)"),
}


def measurable_here(tweak: str, device: str, dataloader: bool) -> tuple[bool, str]:
    """Whether a ``--verify`` re-run can measure ``tweak`` on a run like this one (its device type
    and whether a DataLoader fed it), and why not.

    >>> measurable_here("tf32", "cpu", True)[0], measurable_here("lora", "cpu", False)[0]
    (False, True)
    """
    info = TWEAKS.get(tweak)
    if info is None:
        return False, f"unknown tweak {tweak!r}"
    if not info.runtime:
        return False, info.no_runtime
    for need in info.runtime_needs:
        ok, why = _NEEDS[need]
        if not ok(device, dataloader):
            return False, why.format(device=device.upper())
    return True, ""


def runtime_ids() -> list[str]:
    """Ids with a runtime applier, in catalog order."""
    return [t for t, i in TWEAKS.items() if i.runtime]


def codemod_ids() -> list[str]:
    """Ids with a codemod, in the order stacked rewrites apply."""
    return list(APPLY_ORDER)


def describe(tweak: str) -> dict[str, Any]:
    """The catalog entry as JSON (``ccprof tweaks --json``): stages and options."""
    info = TWEAKS[tweak]
    return {"id": info.id, "title": info.title, "summary": info.summary, "risk": info.risk,
            "runtime": info.runtime, "codemod": info.codemod, "no_runtime": info.no_runtime or None,
            "options": [{"name": f.name, "option": f.metadata.get("cli") or f"{tweak}.{f.name}",
                         "doc": f.metadata.get("doc", "")} for f in fields(info.options)]}


def options_for(tweak: str, data: "TweakOptions | dict[str, Any] | None" = None,
                path: str = "options") -> TweakOptions:
    """The typed options of ``tweak`` from advice.json's dict (checked), or as given."""
    cls = TWEAKS[tweak].options if tweak in TWEAKS else NoOptions
    if isinstance(data, TweakOptions):
        if not isinstance(data, cls):
            raise TypeError(f"{type(data).__name__} are not options of {tweak} ({cls.__name__})")
        return data
    return cls.from_dict(data, path)


# ---- ccprof apply --option -----------------------------------------------------------------

def cli_options() -> dict[str, tuple[str, str]]:
    """Every ``--option`` key: ``{"accumulation_steps": ("grad_accumulation", "steps"), ...}``."""
    out: dict[str, tuple[str, str]] = {}
    for tweak, info in TWEAKS.items():
        for f in fields(info.options):
            key = f.metadata.get("cli")
            if key:
                assert key not in out, f"--option {key} names two tweaks' options"
                out[key] = (tweak, f.name)
    return out


def _check(tweak: str, f: dataclasses.Field, raw: str, value: Any) -> Any:
    """``value`` as field ``f`` takes it; ValueError naming what it must be."""
    kind, least = f.metadata.get("kind"), f.metadata.get("least")
    bad = None
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            bad = "a whole number"
        elif least is not None and value < least:
            bad = f"a whole number >= {least}"
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value == value or (
                least is not None and value <= least):
            bad = f"a number > {least}"
    elif kind == "fraction":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            bad = "a number in [0, 1)"
    elif kind == "names":
        value = [value] if isinstance(value, str) else value
        if not (isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v for v in value)):
            bad = "module names, comma-separated (q_proj,v_proj)"
        else:
            value = list(value)
    elif kind == "ints":
        value = [value] if isinstance(value, int) else value
        if not (isinstance(value, (list, tuple)) and value
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
            bad = "block indices, comma-separated (0,2,4)"
        else:
            value = list(value)
    elif kind == "bool":
        if raw.lower() in ("true", "yes", "1", "false", "no", "0"):
            value = raw.lower() in ("true", "yes", "1")
        else:
            bad = "true or false"
    elif kind == "choice":
        if tweak == "mixed_precision":      # the spellings normalize_dtype takes (bfloat16, 16-mixed ...)
            try:
                value = normalize_dtype(raw)
            except ValueError:
                bad = " or ".join(least)
        elif raw not in least:
            bad = " or ".join(least)
        else:
            value = raw
    else:
        value = raw
    if bad is not None:
        raise ValueError(f"{f.metadata.get('cli') or f.name} must be {bad}, not {raw!r}")
    return value


def option_key(key: str) -> tuple[str, str]:
    """The (tweak, field) an option key names: a short key (``accumulation_steps``) or
    ``<tweak>.<field>`` (``grad_accumulation.steps``); ValueError naming what is known."""
    keys = cli_options()
    if key in keys:
        return keys[key]
    if "." in key and key.split(".", 1)[0] in TWEAKS:
        tweak, name = key.split(".", 1)
        names = [f.name for f in fields(TWEAKS[tweak].options)]
        if name not in names:
            raise ValueError(f"{tweak} has no option {name!r}; its options: {', '.join(names) or 'none'}")
        return tweak, name
    raise ValueError(f"unknown option {key!r}; known: {', '.join(sorted(keys))} "
                     "(or <tweak>.<option>, listed by `ccprof tweaks`)")


def parse_option(text: str) -> tuple[str, str, Any]:
    """``"accumulation_steps=8"`` or ``"grad_accumulation.steps=8"`` -> ("grad_accumulation", "steps", 8).

    Lists as ``a,b``; strings as they are. Raises ValueError naming the option for an unknown
    key or a value of the wrong kind (``accumulation_steps=abc``), before anything is rewritten.
    """
    if "=" not in text:
        raise ValueError(f"--option wants KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    key, raw = key.strip(), raw.strip()
    try:
        tweak, name = option_key(key)
    except ValueError as e:
        raise ValueError(f"--option {text}: {e}") from None
    f = next(f for f in fields(TWEAKS[tweak].options) if f.name == name)
    try:
        value: Any = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = [p.strip() for p in raw.split(",")] if "," in raw else raw
    try:
        return tweak, name, _check(tweak, f, raw, value)
    except ValueError as e:
        raise ValueError(f"--option {text}: {e}") from None
