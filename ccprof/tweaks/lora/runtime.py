"""lora: inject peft LoRA adapters into the live model, freeze the base, train the adapters.

``peft.inject_adapter_in_model`` replaces the target ``nn.Linear`` layers in place (the
user's model object stays the same); B is initialised to zero, so the model computes exactly
what it did before (Hu et al., ICLR 2022). Base weights are frozen (grads and optimizer
state dropped, so the memory really goes), and the adapters join the user's optimizer as a
new param group with the hyperparameters of the group that held the model; the LR schedulers
of that optimizer (``RunObjects.schedulers``) get an entry for it, copied from that group.
"""
from __future__ import annotations

from torch import nn

from ccprof.applier.runtime._base import (
    Applied,
    RunObjects,
    add_param_group,
    extend_schedulers,
    freeze,
    hf_model,
    linear_targets,
    main_optimizer,
    not_applied,
    register,
    template_group,
    trainable_elems,
)
from ccprof.artefacts.tweaks import LoraOptions

__all__ = ["apply_lora", "DEFAULT_R", "DEFAULT_ALPHA"]

TWEAK = "lora"
# The catalog's one default of each option (rank 8, alpha 2 x rank, dropout 0: sources there)
DEFAULT_R = LoraOptions().value("rank")
DEFAULT_ALPHA = LoraOptions().value("alpha")
# Randomly initialised task heads must keep training (peft's modules_to_save for SEQ_CLS).
HEAD_NAMES = ("classifier", "score")


def _is_lora_layer(m: nn.Module) -> bool:
    return hasattr(m, "lora_A") and hasattr(m, "base_layer")


@register(TWEAK)
def apply_lora(objs: RunObjects, r: int = DEFAULT_R, alpha: float | None = None,
               dropout: float = LoraOptions().value("dropout"), target_modules: list[str] | None = None,
               keep_trainable: list[str] | None = None, lr: float | None = None) -> Applied:
    """Inject LoRA adapters into ``objs.model`` in place and train only them.

    Inputs: ``r``, ``alpha`` (default 2 x ``r``), ``dropout``; ``target_modules`` (names or suffixes; default:
    peft's per-architecture list for HF models, else the Linear layers of the repeated
    blocks); ``keep_trainable`` (module names kept trainable; default HF ``classifier`` /
    ``score`` heads); ``lr`` for the adapters (default: the model's current lr).
    Output: Applied with trainable elements before/after in ``details``.
    Example: ``apply_lora(RunObjects(model, [opt]), r=4)``.
    """
    model = objs.model
    if alpha is None:
        alpha = LoraOptions(rank=r).value("alpha")
    try:
        import peft  # here: peft loads only on this path
        from peft import LoraConfig  # here: peft loads only on this path
    except Exception as e:  # peft is the hf extra: say so plainly when it is missing or broken
        return not_applied(TWEAK, f"peft could not be imported ({e}); pip install 'ccprof[hf]'")
    if any(_is_lora_layer(m) for m in model.modules()):
        return not_applied(TWEAK, f"{type(model).__name__} already has LoRA adapters (peft)", already=True)
    opt = main_optimizer(model, objs.optimizers)
    if opt is None:
        return not_applied(TWEAK, "no torch.optim optimizer updates this model's parameters, so the "
                           "adapters would never be trained")

    hf = hf_model(model)
    if target_modules is None:
        from peft.utils import (
            TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as MAP,  # here: peft loads only on this path
        )
        mtype = getattr(getattr(hf, "config", None), "model_type", None)
        target_modules = list(MAP[mtype]) if hf is not None and mtype in MAP else linear_targets(model)
    if not target_modules:
        return not_applied(TWEAK, f"{type(model).__name__} has no nn.Linear layers to adapt")
    if keep_trainable is None:
        keep_trainable = [n for n, _ in model.named_modules() if hf is not None
                          and n.rsplit(".", 1)[-1] in HEAD_NAMES]

    before = trainable_elems(model)
    was_trainable = {id(p) for p in model.parameters() if p.requires_grad}
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                     bias="none")
    try:
        out = peft.inject_adapter_in_model(cfg, model)
    except ValueError as e:  # "Target modules ... not found in the base model"
        return not_applied(TWEAK, f"peft could not inject adapters: {e}")
    assert out is model

    adapted = [n for n, m in model.named_modules() if _is_lora_layer(m)]
    keep = tuple(f"{k}." for k in keep_trainable)
    new_params, base = [], []
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.requires_grad_(True)
            new_params.append(p)
        elif not n.startswith(keep):
            base.append(p)
    # peft has already turned requires_grad off on the base: count what was trainable before it
    frozen = sum(p.numel() for p in base if id(p) in was_trainable)
    freeze(base, objs.optimizers)
    for n, p in model.named_parameters():     # peft froze the kept heads too: train them again
        if n.startswith(keep) and id(p) in was_trainable:
            p.requires_grad_(True)
    template = template_group(opt, model)
    group = add_param_group(opt, new_params, model, lr)
    n_sched = extend_schedulers(objs.schedulers, opt, template)
    after = trainable_elems(model)
    changes = [f"peft LoRA r={r} alpha={alpha} injected into {len(adapted)} Linear layers "
               f"({', '.join(adapted[:4])}{', ...' if len(adapted) > 4 else ''})",
               f"froze {frozen:,} base parameter elements (grads and optimizer state dropped)",
               f"added {len(new_params)} adapter tensors ({sum(p.numel() for p in new_params):,} elements) "
               f"to {type(opt).__name__} as a new param group (lr={group['lr']:g})",
               f"trainable elements {before:,} -> {after:,}"]
    if keep_trainable:
        changes.append(f"kept trainable: {', '.join(keep_trainable)}")
    if n_sched:
        changes.append(f"{n_sched} LR scheduler(s) of {type(opt).__name__} schedule the adapter group "
                       "like the group it copies")
    return Applied(TWEAK, True, f"LoRA r={r} on {len(adapted)} layers; trainable {before:,} -> {after:,}",
                   changes, details={"trainable_before": before, "trainable_after": after,
                                     "adapted": adapted, "adapter_elems": sum(p.numel() for p in new_params)})
