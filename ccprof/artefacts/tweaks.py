"""The tweak catalog: one entry per id, with the stages that id has and its typed options.

One id names the same thing everywhere (its folder ``ccprof/tweaks/<id>/``, advisor, options,
runtime applier, codemod, test folder, report anchor). Each entry says which stages exist for
it (every id has an advisor; a runtime applier for ``--verify``; a codemod for ``ccprof
apply``), carries the dataclass of its options (``ccprof/artefacts/tweak_options.py``), and
owns what the engines would otherwise decide by id: its conflicts, run scope, place in the plan
and stacked rewrites, and the details keys of old advice files. An option has one name, the
field's, and one default, through every stage:

- the advisor projects with ``AdviceContext.option(id, name)`` and fills what it projected
  (``GradAccumulationOptions(steps=4)``);
- advice.json stores it (``Advice.options``, validated on load against the dataclass);
- the runtime applier takes ``options.runtime_kwargs()`` (``apply_grad_accumulation(micro_batches=4)``),
  the defaults of unset fields included;
- the codemod reads ``self.opt("steps")``: the field, else the catalog's default;
- ``--option`` (``analyze``, ``advise``, ``apply``) sets a field by its ``cli`` key
  (``accumulation_steps=8``) or as ``<tweak>.<field>=...`` (``grad_accumulation.steps=8``).

A field whose default is None is decided from the run (its ``doc`` says how).
``tests/artefacts/test_tweak_options.py`` walks every id through advisor -> advice.json -> runtime
-> codemod; ``tests/artefacts/test_tweak_layout.py`` checks the one default and the layout.

Example::

    from ccprof.artefacts.tweaks import TWEAKS, options_for
    TWEAKS["lora"].runtime, TWEAKS["lora"].codemod          # True, True
    o = options_for("lora", {"rank": 16, "targets": ["blocks.0.attn.c_attn"]})
    o.runtime_kwargs()                                      # {"r": 16, "target_modules": [...]}
"""
from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from ccprof.artefacts.tweak_options import (  # noqa: F401
    BatchSizeOptions,
    CheckpointingOptions,
    CompileOptions,
    DataloaderOptions,
    DistillationOptions,
    EarlyStoppingOptions,
    FinetuneOptions,
    GradAccumulationOptions,
    LoraOptions,
    MixedPrecisionOptions,
    NoOptions,
    PruningOptions,
    QuantizationOptions,
    TweakOptions,
    WarmStartOptions,
)
from ccprof.artefacts.vocab import normalize_dtype

__all__ = ["TweakInfo", "TWEAKS", "TWELVE", "MORE", "APPLY_ORDER", "TweakOptions", "NoOptions", "FinetuneOptions", "LoraOptions",
           "WarmStartOptions", "CheckpointingOptions", "MixedPrecisionOptions", "GradAccumulationOptions",
           "DistillationOptions", "PruningOptions", "QuantizationOptions", "EarlyStoppingOptions",
           "CompileOptions", "DataloaderOptions", "BatchSizeOptions", "options_for", "runtime_ids", "measurable_here",
           "codemod_ids", "conflict", "describe", "options_from_cli", "cli_options", "option_key", "parse_option"]


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
    no_codemod: str = ""        # why `ccprof apply` has no rewrite for it, and what the user does instead
    # what a re-run needs to measure it ("cuda": the effect exists only on an NVIDIA GPU;
    # "dataloader": it changes a torch DataLoader the run uses); see measurable_here
    runtime_needs: tuple[str, ...] = ()
    # the saving cuts the run's steps, not the step's time (the plan scales steps by it)
    run_scoped: bool = False
    # (other id, why): pairs the plan never applies together; each pair is stated once, on either id
    conflicts: tuple[tuple[str, str], ...] = ()
    # advice.json files written before Advice.options existed: (details key, option field), read at load
    legacy_details: tuple[tuple[str, str], ...] = ()
    # the plan takes it after every other tweak (it is priced on what the others leave)
    plan_last: bool = False
    # the facts of the script reader (ccprof.script.applied) that mean the script has the tweak:
    # "already applied" in analyze and apply alike, and "turn on what you have" when the run left it off
    facts: tuple[str, ...] = ()
    # a row of the plan across configurations (ccprof.advisors.configurations) with it applied:
    # "model_state" (the model's parameters, gradients and optimizer state stay as written) or
    # "adapters" (the base is frozen: gradients and optimizer state are the adapters', a few MiB)
    plan_variant: str = ""

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
              FinetuneOptions,
              no_runtime="it starts from a pretrained checkpoint ccprof cannot choose for you: load one of the "
                         "same family with from_pretrained before training (the advice names one)",
              no_codemod="pick the pretrained checkpoint the advice names and load it with from_pretrained; "
                         "which weights to start from is your choice, not a rewrite's",
              run_scoped=True, facts=("from_pretrained",),
              conflicts=(("warm_start", "the pretrained checkpoint already brings the embeddings"),)),
    TweakInfo("lora", "LoRA adapters instead of full fine-tuning",
              "Freeze the base weights; train low-rank adapters on the Linear layers.", "accuracy",
              LoraOptions, runtime=True, codemod=True, plan_variant="adapters",
              conflicts=(("warm_start", "LoRA freezes every base weight, embeddings included"),),
              legacy_details=(("rank", "rank"), ("targets", "targets")),
              facts=('peft',)),
    TweakInfo("warm_start", "Warm-start (and freeze) embeddings",
              "Load pretrained embedding vectors and stop training them.", "convergence",
              WarmStartOptions, runtime=True, codemod=True,
              run_scoped=True, legacy_details=(("embeddings", "embeddings"),)),
    TweakInfo("checkpointing", "Gradient (activation) checkpointing",
              "Keep only block boundaries; recompute the rest in backward.", "none",
              CheckpointingOptions, runtime=True, codemod=True,
              facts=('checkpointing',), plan_variant="model_state"),
    TweakInfo("mixed_precision", "Mixed precision (bf16/fp16 autocast)",
              "Run matmuls and convolutions in 16-bit with fp32 master weights.", "numerics",
              MixedPrecisionOptions, runtime=True, codemod=True,
              legacy_details=(("policy.autocast", "dtype"),),
              facts=('autocast',), plan_variant="model_state"),
    TweakInfo("grad_accumulation", "Gradient accumulation",
              "Reach the wanted batch with smaller micro-batches that fit in memory.", "none",
              GradAccumulationOptions, runtime=True, codemod=True,
              conflicts=(("batch_size", "one shrinks the micro-batch to fit, the other grows it"),),
              legacy_details=(("accum_steps", "steps"),),
              facts=('accumulation',)),
    TweakInfo("distillation", "Distill into a smaller student",
              "Train a shallower model on the teacher's soft labels.", "accuracy",
              DistillationOptions, runtime=True,
              no_codemod="it needs a student model and a teacher pass in your loop: `ccprof analyze --verify` "
                         "measures it at run time; write the student with the advice's figures",
              conflicts=(("pruning", "both shrink the model; apply one, re-profile, then consider the other"),
                         ("lora", "a distilled student trains all its weights; LoRA adapts a fixed base"))),
    TweakInfo("pruning", "Pruning (structured, 2:4)",
              "Remove channels/heads, or use 2:4 sparsity on tensor cores.", "accuracy",
              PruningOptions, runtime=True,
              no_codemod="it changes the trained weights, not the script: `ccprof analyze --verify` measures it; "
                         "prune a trained checkpoint with torch.nn.utils.prune, then fine-tune"),
    TweakInfo("quantization", "Quantize frozen weights (int8 / 4-bit)",
              "Store frozen base weights in 8 or 4 bits (QLoRA style).", "accuracy",
              QuantizationOptions, runtime=True,
              no_codemod="it stores the frozen base weights in 8 or 4 bits (QLoRA style, a quantization library's "
                         "layers): `ccprof analyze --verify` measures it at run time"),
    TweakInfo("early_stopping", "Early stopping on the validation loss",
              "Stop when the validation loss has not improved for a patience window.", "convergence",
              EarlyStoppingOptions, codemod=True,
              no_runtime="it ends the run sooner, after many epochs of validation loss that a few measured "
                         "steps never reach; `ccprof apply -t early_stopping` adds a patience check to your loop",
              run_scoped=True,
              facts=('early_stopping',)),
    TweakInfo("data_curation", "Data curation (deduplication)",
              "Drop exact and near-duplicate examples; spend steps on new data.", "convergence",
              no_runtime="it changes which examples the run sees, so a few steps cannot show its effect: "
                         "deduplicate the dataset (the advice lists the duplicates found), then profile the new data",
              no_codemod="it changes the data, not the script: drop the duplicates the advice lists from the dataset",
              run_scoped=True),
    TweakInfo("distributed", "Distributed training (DDP / FSDP)",
              "Use every visible GPU with DDP, or shard model state with FSDP.", "none", codemod=True,
              no_runtime="it needs one process per GPU from the start and a launcher (torchrun): "
                         "`ccprof apply -t distributed` rewrites the script, and --nproc N measures it",
              facts=('ddp', 'fsdp')),
    TweakInfo("tf32", "TF32 matmuls", "Let fp32 matmuls use TF32 tensor cores (Ampere+).", "numerics",
              runtime=True, codemod=True, runtime_needs=("cuda",),
              conflicts=(("mixed_precision", "under autocast the matmuls already run in bf16; TF32 only touches the rest"),),
              facts=('tf32',)),
    TweakInfo("compile", "torch.compile", "Fuse kernels and cut Python overhead.", "none",
              CompileOptions, runtime=True, codemod=True,
              facts=('compile',)),
    TweakInfo("fused_optimizer", "Fused / foreach optimizer",
              "One kernel for the whole parameter update.", "none", runtime=True, codemod=True,
              facts=('fused_optimizer',)),
    TweakInfo("dataloader", "DataLoader workers and pinned memory",
              "Hide data loading behind compute.", "none", DataloaderOptions, runtime=True, codemod=True,
              runtime_needs=("dataloader",),
              legacy_details=(("workers_after", "num_workers"),),
              facts=('dataloader',)),
    TweakInfo("batch_size", "Larger batch in the memory headroom",
              "Fill the device to raise utilization.", "convergence", BatchSizeOptions, runtime=True, codemod=True,
              runtime_needs=("dataloader",),
              plan_last=True, legacy_details=(("batch_after", "batch_size"),),
              conflicts=(("right_size_gpu", "a larger batch fills this GPU's memory; a cheaper GPU has less of it"),)),
    TweakInfo("right_size_gpu", "Right-size the GPU",
              "A cheaper GPU that fits the job finishes the run for fewer dollars.", "none",
              no_runtime="it changes the GPU you rent, not the script: re-project with --gpu <id>, or rerun "
                         "on the suggested GPU",
              no_codemod="rent the GPU it names; the script does not change",
              plan_last=True),
)}

# Order in which stacked codemods apply: model surgery (checkpointing, LoRA) before the
# optimizer-facing ones, wrappers (compile, DDP) last, so each sees the previous one's code.
APPLY_ORDER = ("tf32", "warm_start", "checkpointing", "lora", "mixed_precision", "grad_accumulation",
               "batch_size", "fused_optimizer", "dataloader", "early_stopping", "compile", "distributed")
assert set(APPLY_ORDER) == {t for t, i in TWEAKS.items() if i.codemod}, "APPLY_ORDER must list every codemod"
assert all(bool(i.no_runtime) != i.runtime for i in TWEAKS.values()), "say why an id has no runtime applier"
assert all(bool(i.no_codemod) != i.codemod for i in TWEAKS.values()), "say why an id has no rewrite"
assert all(o in TWEAKS and o != t for t, i in TWEAKS.items() for o, _ in i.conflicts), "conflicts name catalog ids"


def conflict(a: str, b: str) -> str | None:
    """Why tweaks ``a`` and ``b`` must not both be applied (stated on either entry), or None.

    >>> conflict("warm_start", "lora")
    'LoRA freezes every base weight, embeddings included'
    """
    for x, y in ((a, b), (b, a)):
        for other, why in TWEAKS[x].conflicts if x in TWEAKS else ():
            if other == y:
                return why
    return None


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
            "no_codemod": info.no_codemod or None,
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


def options_from_cli(texts: list[str] | tuple[str, ...]) -> dict[str, TweakOptions]:
    """Per tweak, the typed options ``--option KEY=VALUE`` texts set (later ones win).

    >>> options_from_cli(["lora_rank=16", "lora.dropout=0.1"])["lora"]
    LoraOptions(rank=16, alpha=None, dropout=0.1, targets=None, keep_trainable=None, lr=None)
    """
    out: dict[str, TweakOptions] = {}
    for text in texts:
        tweak, name, value = parse_option(text)
        out[tweak] = options_for(tweak, out.get(tweak)).merged({name: value})
    return out
