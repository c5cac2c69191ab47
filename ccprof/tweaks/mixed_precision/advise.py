"""mixed_precision: bf16/fp16 autocast; time re-costed through the cost model, memory from the ledger."""
from __future__ import annotations

import re
from dataclasses import replace

from ccprof.advisors import constants as C
from ccprof.advisors._common import (
    fmt_bytes,
    fmt_change,
    fmt_pct,
    fp32_matmuls,
    gpu_spec,
    ledger,
    make_advice,
    recost,
)
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import MixedPrecisionOptions
from ccprof.artefacts.vocab import MATMUL_CLASSES, dtype_name, normalize_dtype
from ccprof.hardware import half_dtype
from ccprof.hardware.edits import to_float32
from ccprof.hardware.kernels import op_class

__all__ = ["advise_mixed_precision", "project_mixed_precision_memory"]

SNIPPET = """
# bf16 autocast around forward + loss; weights, grads and optimizer stay fp32.
with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
    loss = loss_fn(model(x), y)
loss.backward()          # fp16 instead of bf16 also needs torch.amp.GradScaler("cuda")
optimizer.step()
"""


# How each module's own saved activations fare under bf16 autocast, by class name. Sources:
# PyTorch autocast op reference (https://pytorch.org/docs/stable/amp.html#autocast-op-reference):
# "CUDA Ops that can autocast to float32" lists layer_norm, group_norm, softmax, log_softmax
# and the losses; the CPU fp32 list has the losses (cross_entropy_loss, nll_loss, mse_loss...)
# but no norm or softmax; ops on no list (batch_norm, relu, gelu, max_pool2d, dropout...)
# "run in the type of their inputs". Checked on torch 2.13 CPU: BatchNorm2d/LayerNorm/
# GroupNorm on a bf16 input return bf16 under CPU autocast, cross_entropy returns fp32.
_MATMUL = ("Linear", "Conv")                  # autocast lowers them: a bf16 copy of the input is saved
_FP32_ALWAYS = ("Loss", "RMSNorm")            # losses: both lists; HF RMSNorms upcast to fp32 by hand
_FP32_CUDA = ("LayerNorm", "GroupNorm", "Softmax")   # CUDA fp32 list; on CPU they follow their input
_INTEGER = ("Embedding",)                     # saves its integer indices, whatever the autocast dtype
# Forward ops whose float output also carries an integer tensor saved for backward, and its
# element size: max-pool indices are int64, dropout masks bool (aten native_functions.yaml).
# The op's bytes_written is n x (float element + integer element), so the integer part is
# bytes_written x k / (4 + k) for an fp32 op.
_INT_SAVED_ELEM_BYTES = {
    "aten.max_pool2d_with_indices": 8, "aten.max_pool3d_with_indices": 8,
    "aten.adaptive_max_pool2d": 8, "aten.adaptive_max_pool3d": 8, "aten.native_dropout": 1,
}
# Forward ops whose fp32 output is saved for backward and stays fp32 under autocast: the loss's
# log-softmax (cross_entropy/log_softmax on the fp32 lists); softmax only on CUDA.
_FP32_SAVED_OPS = {"aten._log_softmax": ("cpu", "cuda"), "aten._softmax": ("cuda",)}


def _parent(n: str) -> str | None:
    return None if not n else (n.rsplit(".", 1)[0] if "." in n else "")


def _own_activation_bytes(profile: Profile) -> list[tuple[object, int]]:
    """(module, activation bytes saved by the module itself, not by its children).

    Containers (ModuleList) record 0 although their children saved tensors: a module's
    total is taken as max(its own record, the sum of its children's totals), deepest first.
    """
    mods = profile.model.modules
    total = {m.name: m.activation_bytes for m in mods}
    kids: dict[str, int] = {}
    for m in sorted(mods, key=lambda m: -m.name.count(".") - (1 if m.name else 0)):
        t = max(total[m.name], kids.get(m.name, 0))
        total[m.name] = t
        par = _parent(m.name)
        if par is not None:
            kids[par] = kids.get(par, 0) + t
    return [(m, max(0, total[m.name] - kids.get(m.name, 0))) for m in mods]


def _is_matmul_module(m: object, linear_names: set[str]) -> bool:
    return m.name in linear_names or any(k in m.class_ for k in _MATMUL)


def _saved_dtype(m: object, prev: object | None, device: str, linear_names: set[str]) -> str:
    """'matmul' | 'fp32' | 'integer' | 'input': what the module's own saved tensors become.

    A LayerNorm/GroupNorm/Softmax on CPU follows its input: bf16 when the sibling registered
    just before it is a Linear/Conv (Sequential and conv-net order), fp32 otherwise (a
    transformer's pre-norm reads the fp32 residual stream: fp32 + bf16 adds promote to fp32).
    """
    if _is_matmul_module(m, linear_names):
        return "matmul"
    if any(k in m.class_ for k in _FP32_ALWAYS):
        return "fp32"
    if any(k in m.class_ for k in _INTEGER):
        return "integer"
    if any(k in m.class_ for k in _FP32_CUDA):
        if device == "cuda" or prev is None or not _is_matmul_module(prev, linear_names):
            return "fp32"
    return "input"


def _forward_ops(profile: Profile) -> list:
    return [o for o in profile.ops if o.phase == "forward" and dtype_name(o.dtype) == "float32"]


def _int_saved_bytes(profile: Profile) -> int:
    """Integer tensors saved next to fp32 outputs (max-pool indices, dropout masks), one step."""
    return int(sum(o.bytes_written * k / (C.BYTES_FP32 + k) for o in _forward_ops(profile)
                   for op, k in _INT_SAVED_ELEM_BYTES.items() if o.op.split(".default")[0] == op))


def _fp32_saved_op_bytes(profile: Profile) -> tuple[int, int]:
    """(fp32 outputs autocast keeps fp32 and backward saves, of which the loss's log-softmax)."""
    dev = profile.device.type
    kept = loss = 0
    for o in _forward_ops(profile):
        base = o.op.split(".default")[0]
        if dev in _FP32_SAVED_OPS.get(base, ()):
            kept += o.bytes_written
            if base == "aten._log_softmax":
                loss += o.bytes_written
    return kept, loss


def _batch_bytes(profile: Profile) -> tuple[int, int]:
    """(all bytes, floating-point bytes) of one batch, from ``data.shapes`` ('x: float32[8, 3]')."""
    size = {"float64": 8, "float32": 4, "int64": 8, "int32": 4, "float16": 2, "bfloat16": 2,
            "int16": 2, "uint8": 1, "int8": 1, "bool": 1}
    total = floating = 0
    for s in profile.data.shapes:
        m = re.search(r"(\w+)\[([\d,\s]*)\]", s)
        if not m or m.group(1) not in size:
            continue
        n = 1
        for d in filter(None, (x.strip() for x in m.group(2).split(","))):
            n *= int(d)
        b = n * size[m.group(1)]
        total += b
        floating += b if m.group(1).startswith("float") else 0
    return total, floating


def project_mixed_precision_memory(profile: Profile) -> dict:
    """Peak memory under bf16 autocast, on the profile's device.

    Activations: each module's own saved bytes are classed by what autocast does to them
    (autocast op reference; see ``_saved_dtype``). Linear/Conv save a bf16 copy of their
    input (halves) plus a bf16 copy of their weight (``weight_cache_bytes``); ops on no
    autocast list (BatchNorm, activations, pooling, dropout, the root's own functional ops)
    follow their bf16 input and halve, except integer tensors they save (max-pool indices,
    dropout masks, from the op table) and fp32 outputs autocast keeps (the loss's
    log-softmax; softmax on CUDA); norms on the fp32 list, losses, Embedding indices, and
    anything saved outside the model stay. A float batch fed straight to a Linear/Conv (one
    that saved nothing of its own) gets a bf16 copy saved (``input_copy_bytes``).
    Temporaries (``other_bytes``): the batch and the loss's fp32 logit gradients (2 x the
    log-softmax output) stay; the rest are activation gradients in bf16 and halve.

    Example: Linear input 100 MiB + BatchNorm input 40 MiB + LayerNorm 20 MiB on CUDA ->
    50 + 20 + 20 MiB, plus 2 bytes x Linear params. Returns {"activations_after_bytes",
    "weight_cache_bytes", "halved_bytes", "kept_bytes", "input_copy_bytes",
    "other_after_bytes", "memory_saved_bytes", "peak_bytes_after"}.
    """
    led = ledger(profile)
    own = _own_activation_bytes(profile)
    lin = set(profile.model.linear_names)
    dev = profile.device.type
    copy = 0
    if own and sum(b for _, b in own):
        siblings: dict[str | None, object] = {}
        by: dict[str, int] = {"matmul": 0, "fp32": 0, "integer": 0, "input": 0}
        for m, b in own:
            if not m.name:
                by["input"] += b                     # the root's own functional ops
                continue
            par = _parent(m.name)
            by[_saved_dtype(m, siblings.get(par), dev, lin)] += b
            siblings[par] = m
        outside = max(0, led.act - sum(b for _, b in own))      # e.g. a loss computed by the script
        fp32_ops, _ = _fp32_saved_op_bytes(profile)
        stay = min(by["input"], _int_saved_bytes(profile) + max(0, fp32_ops - outside))
        halved = by["matmul"] + by["input"] - stay
        _, float_batch = _batch_bytes(profile)
        if float_batch and any(b == 0 and _is_matmul_module(m, lin) for m, b in own if m.name):
            copy = float_batch * max(1, profile.steps.micro_batches) * C.BYTES_BF16 // C.BYTES_FP32
    else:  # no per-module ledger: everything halves except MP_OTHER_ACT_KEEP_FRAC
        halved = int(led.act * (1 - C.MP_OTHER_ACT_KEEP_FRAC))
    halved = max(0, min(halved, led.act))
    cache = sum(m.params for m in profile.model.modules
                if m.name and _is_matmul_module(m, lin)) * C.BYTES_BF16
    act_after = int(led.act - halved * (1 - C.BYTES_BF16 / C.BYTES_FP32) + cache + copy)
    # temporaries at the peak: the batch and the fp32 loss gradients stay, the rest halve
    _, loss = _fp32_saved_op_bytes(profile)
    batch, _ = _batch_bytes(profile)
    keep_other = min(led.other, 2 * loss + batch)
    other_saved = int(min(led.other - keep_other, halved) * (1 - C.BYTES_BF16 / C.BYTES_FP32))
    saved = led.act - act_after + other_saved
    # a sane peak: parameters and optimizer state stay resident, and activations fit under the peak
    # (a ledger whose activations exceed its peak would otherwise project a negative peak)
    saved = min(saved, max(0, led.peak - led.params - led.opt))
    act_after = max(0, min(act_after, led.peak - saved - led.params - led.opt))
    return {"activations_after_bytes": act_after, "weight_cache_bytes": int(cache),
            "halved_bytes": int(halved), "kept_bytes": int(led.act - halved), "input_copy_bytes": int(copy),
            "other_after_bytes": int(led.other - other_saved),
            "memory_saved_bytes": int(saved), "peak_bytes_after": int(led.peak - saved)}




def matmul_flops_by_dtype(profile: Profile) -> dict[str, int]:
    """Measured matmul/conv/attention FLOPs of one step, by the dtype they ran in."""
    out: dict[str, int] = {}
    for op in profile.ops:
        if op_class(op.op) in MATMUL_CLASSES:
            out[op.dtype] = out.get(op.dtype, 0) + op.flops
    return out


def _measured_effect(profile: Profile) -> str:
    """What this run measured of the tweak's effect (for an already-applied tweak)."""
    by = matmul_flops_by_dtype(profile)
    total = sum(by.values())
    if not total:
        return ""
    low = sum(v for k, v in by.items() if k in ("bfloat16", "float16"))
    led = ledger(profile)
    return (f" Measured in this run: {fmt_pct(low / total)} of the {total:,} matmul/conv/attention FLOPs per step "
            f"ran in 16-bit; activations saved for backward are {fmt_bytes(led.act)} of the {fmt_bytes(led.peak)} peak.")


SNIPPET_FLOAT64 = """
# the model is float64 ({what}, line {line}): autocast leaves float64 alone. Make it float32 first
# (drop the .double() / dtype=torch.float64; feed float32 batches), then autocast:
model = model.float()
with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
    loss = loss_fn(model(x.float()), y.float())
loss.backward()
optimizer.step()
"""


def _float64_share(profile: Profile) -> float:
    """The share of the step's matmul/conv/attention FLOPs that ran in float64."""
    by = matmul_flops_by_dtype(profile)
    total = sum(by.values())
    return by.get("float64", 0) / total if total else 0.0


def _float32_profile(profile: Profile) -> Profile:
    """The profile as the float32 model would record it: float64 ops in float32 (half the bytes,
    ``edits.to_float32``) and every float64 tensor of the ledger at half its size."""
    m = profile.memory
    half = {f: getattr(m, f) // 2 for f in ("peak_bytes", "params_bytes", "grads_bytes", "optimizer_state_bytes",
                                            "activations_bytes", "other_bytes", "buffers_bytes")}
    modules = [replace(mod, activation_bytes=mod.activation_bytes // 2) for mod in profile.model.modules]
    return replace(profile, ops=to_float32(profile.ops), memory=replace(m, **half),
                   model=replace(profile.model, modules=modules))


def _advise_float64(profile: Profile, ctx: AdviceContext) -> Advice:
    """A float64 model: autocast alone changes nothing; the lever is float64 -> float32, then autocast."""
    st = profile.static
    line, what = st.lines.get("float64"), st.what.get("float64")
    where = f"{what} at line {line}" if line else "the script (the line was not found)"
    spec = gpu_spec(profile, ctx)
    half = half_dtype(spec)
    led = ledger(profile)
    alone = recost(profile, ctx, policy={"autocast": half}, spec=spec)
    ops32 = to_float32(profile.ops)
    rc32 = recost(profile, ctx, ops=ops32, spec=spec)
    rc = recost(profile, ctx, ops=ops32, policy={"autocast": half}, spec=spec)
    p32 = _float32_profile(profile)
    mem = project_mixed_precision_memory(p32)
    peak_after = mem["peak_bytes_after"]
    snippet = SNIPPET_FLOAT64.format(what=what or "float64", line=line or "?")
    rationale = (f"The model is float64 ({profile.precision.param_dtype} parameters; {fmt_pct(_float64_share(profile))} "
                 f"of the matmul FLOPs ran in float64), made so by {where}. Autocast leaves float64 tensors alone, "
                 f"so autocast by itself changes the step {alone.says()}. The lever is the float64: in float32 the "
                 f"step goes {rc32.says()} ({fmt_change(rc32.frac)}: half the bytes per op); with {half} autocast on "
                 f"top, {rc.says()}: {fmt_change(rc.frac)} in all. Memory: every float64 tensor halves in float32 "
                 f"(peak {fmt_bytes(led.peak)} -> {fmt_bytes(p32.memory.peak_bytes)}); with autocast's 16-bit "
                 f"activations and its {fmt_bytes(mem['weight_cache_bytes'])} of {half} weight copies the peak is "
                 f"{fmt_bytes(peak_after)}. Check that the run does not need float64's "
                 "precision (a physics or ill-conditioned problem may).")
    return make_advice(
        "mixed_precision", "recommended", profile, ctx, confidence="medium", risk="numerics",
        time_saved_frac=rc.frac, memory_saved_bytes=max(0, led.peak - peak_after), peak_bytes_after=peak_after,
        rationale=rationale, snippet=snippet, options=MixedPrecisionOptions(dtype=normalize_dtype(half)),
        assumptions=[
            "Autocast does not cast float64 tensors (autocast's eligibility test skips kDouble), so a float64 "
            "op keeps its dtype and bytes under autocast.",
            "float64 -> float32: each float64 op keeps its shapes and FLOPs and moves half the bytes (its "
            "tensors assumed floating point); every tensor of the memory ledger halves.",
            "float64 matmuls are costed at the GPU's fp32 CUDA-core rate: the catalog has no FP64 peaks. That "
            "matches an A100 (FP64 Tensor Core 19.5 TFLOP/s = FP32 19.5 TFLOP/s) and understates the saving on "
            "GPUs whose FP64 rate is a small fraction of FP32 (L4, A10G, T4, RTX 4090).",
            "Then autocast as in the float32 case: PyTorch's autocast lists, matmuls on 16-bit tensor cores, "
            "activations saved by matmuls and what follows them in 16-bit.",
        ],
        sources=["PyTorch autocast docs: 'CUDA Ops that can autocast' act on floating-point tensors; "
                 "aten/src/ATen/autocast_mode.h is_eligible() excludes kDouble",
                 "NVIDIA A100 Tensor Core GPU datasheet (2021): FP64 Tensor Core 19.5 TFLOP/s, FP32 19.5 TFLOP/s",
                 f"ccprof kernel model ({spec.spec_source})"],
        details={"float64_line": line, "float64_what": what, "policy": {"autocast": half},
                 "step_s_before_model": rc.before.step_s, "step_s_autocast_only_model": alone.after.step_s,
                 "step_s_float32_model": rc32.after.step_s, "step_s_after_model": rc.after.step_s,
                 "peak_bytes_float32": p32.memory.peak_bytes, **mem})


@register("mixed_precision")
def advise_mixed_precision(profile: Profile, ctx: AdviceContext) -> Advice:
    """Recommend autocast when it saves time or memory; time re-costed through the cost model."""
    p = profile.precision
    if p.param_dtype == "float64" or _float64_share(profile) > 0.5:
        return _advise_float64(profile, ctx)
    if p.autocast or profile.static.autocast or p.param_dtype in ("bfloat16", "float16"):
        cuda_only = profile.static.on_cuda.get("autocast")
        how = (f"autocast ({p.autocast_dtype or 'dtype unknown'}) was seen during the run" if p.autocast
               else f"the script turns autocast on when the device is CUDA (line "
                    f"{profile.static.lines.get('autocast', '?')}: {cuda_only}), the branch the target GPU takes; "
                    "this CPU run took the other" if cuda_only
               else f"the script uses autocast (line {profile.static.lines.get('autocast', '?')})"
               if profile.static.autocast else f"parameters are already {p.param_dtype}")
        return make_advice("mixed_precision", "already_applied", profile, ctx, confidence="high",
                           rationale=f"Mixed precision is already on: {how}.{_measured_effect(profile)}",
                           snippet=SNIPPET)
    spec = gpu_spec(profile, ctx)
    by = matmul_flops_by_dtype(profile)
    mm32 = sum(v for k, v in by.items() if dtype_name(k) == "float32")
    mm_share = mm32 / profile.flops.per_step if profile.flops.per_step else 0.0
    mem = project_mixed_precision_memory(profile)
    led = ledger(profile)
    dev = profile.device.type
    half = half_dtype(spec)
    rc = recost(profile, ctx, policy={"autocast": half}, spec=spec)
    frac = rc.frac
    assumptions = [
        f"Activations that become 2-byte ({fmt_bytes(mem['halved_bytes'])}): the inputs Linear/Conv layers save "
        "(autocast lowers them: 'CUDA/CPU Ops that can autocast to lower precision'), and what BatchNorm, "
        "activation functions, pooling, dropout and the model's own functional ops save, since ops on no "
        "autocast list 'run in the type of their inputs' (PyTorch autocast op reference, "
        "https://pytorch.org/docs/stable/amp.html#autocast-op-reference).",
        f"Activations that keep their size ({fmt_bytes(mem['kept_bytes'])}): the loss's log-softmax (cross_entropy is "
        "on both autocast fp32 lists), max-pool indices and dropout masks (integer), Embedding indices, "
        "RMSNorms (they upcast to fp32 by hand), anything saved outside the model, and "
        + ("LayerNorm/GroupNorm/softmax (on CUDA autocast's fp32 list)." if dev == "cuda" else
           "LayerNorm/GroupNorm/softmax unless a Linear/Conv feeds them (CPU autocast lets them follow their "
           "input; a transformer's pre-norm reads the fp32 residual stream)."),
        f"Autocast adds {half} copies of the Linear/Conv weights ({fmt_bytes(mem['weight_cache_bytes'])}) and of a float "
        f"batch fed straight to one ({fmt_bytes(mem['input_copy_bytes'])}), saved for backward.",
        f"Temporaries at the peak ({fmt_bytes(led.other)} -> {fmt_bytes(mem['other_after_bytes'])}): the batch and the "
        "loss's fp32 logit gradients (2 x its log-softmax output) keep their size; the rest are activation "
        "gradients, 16-bit like the activations, and halve (at most as much as the activations that halve).",
        "A Linear that shares its fp32 input with a sibling (q/k/v projections) gets its own 16-bit copy under "
        "autocast; the profile cannot tell it from one fed by 16-bit attention output, so it is not counted "
        "(a tiny Llama's projection is ~6% low for it).",
        "Weights, gradients and optimizer state stay fp32: mixed precision keeps fp32 master weights (Micikevicius et al., ICLR 2018), "
        "16 bytes/param with Adam either way (Rajbhandari et al., ZeRO, SC 2020): AMP alone shrinks activations, not model state.",
        "Time: every op is re-costed as CUDA autocast would run it (PyTorch's lists; the profiler recorded each "
        "op's 16-bit or fp32 bytes and the casts autocast adds), matmuls on the 16-bit tensor cores.",
    ]
    how = (f"re-costing the step as autocast would run it ({half} matmuls on tensor cores, 16-bit bytes for the "
           f"ops that follow them, fp32 norms and losses, and the casts): {rc.says()}")
    act_share = min(led.act, led.peak) / led.peak if led.peak else 0.0
    fm = fp32_matmuls(profile, ctx, spec)          # the fact tf32 states too, from the same computation
    facts = {**fm.facts(), "step_s_model": rc.before.step_s}
    if mm_share < C.MP_MATMUL_SHARE_MIN and mem["memory_saved_bytes"] <= 0:
        return make_advice("mixed_precision", "not_applicable", profile, ctx, confidence="medium",
                           rationale=(f"{fm.says()}: below the {fmt_pct(C.MP_MATMUL_SHARE_MIN)} of the FLOPs where "
                                      f"16-bit matmuls pay; autocast would change the step {rc.says()}, and "
                                      f"activations are {fmt_pct(act_share)} of peak: autocast would save little."),
                           snippet=SNIPPET, details={"fp32_matmul_flops_frac": mm_share, "facts": facts, **mem})
    rationale = (f"{fm.says()}; {how}: {fmt_change(frac)}. Activations are {fmt_bytes(min(led.act, led.peak))} "
                 f"({fmt_pct(act_share)} of the {fmt_bytes(led.peak)} peak); {fmt_bytes(mem['halved_bytes'])} of them "
                 f"are saved by matmuls and the ops that follow them and halve in bf16, and autocast adds "
                 f"{fmt_bytes(mem['weight_cache_bytes'] + mem['input_copy_bytes'])} of bf16 weight and input copies: "
                 f"activations {fmt_bytes(mem['activations_after_bytes'])}; temporaries {fmt_bytes(led.other)} -> "
                 f"{fmt_bytes(mem['other_after_bytes'])}; peak {fmt_bytes(led.peak)} -> {fmt_bytes(mem['peak_bytes_after'])}.")
    return make_advice("mixed_precision", "recommended", profile, ctx,
                       confidence="high" if profile.ops and any(o.autocast for o in profile.ops) else "medium",
                       time_saved_frac=frac, memory_saved_bytes=mem["memory_saved_bytes"],
                       peak_bytes_after=mem["peak_bytes_after"], rationale=rationale,
                       assumptions=assumptions, snippet=SNIPPET,
                       options=MixedPrecisionOptions(dtype=normalize_dtype(half)),
                       sources=["Micikevicius et al., Mixed Precision Training, ICLR 2018 ('nearly halves memory')",
                                "PyTorch autocast op reference (which ops run 16-bit, which fp32)",
                                f"ccprof kernel model ({spec.spec_source})"],
                       details={"fp32_matmul_flops_frac": mm_share, "facts": facts, "policy": {"autocast": half},
                                "step_s_before_model": rc.before.step_s, "step_s_after_model": rc.after.step_s, **mem})
