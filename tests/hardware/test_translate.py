"""From the CPU's op list to what a CUDA GPU would run: the optimizer's foreach/fused kernels,
cuDNN TF32, attention kernels, and autocast's 16-bit ops and casts (recorded from real tiny
models through the profiler's FLOP pass)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from ccprof.artefacts.profile import OpCost, OptimizerInfo, OptimizerSection, Precision, Profile
from ccprof.hardware import load_catalog
from ccprof.hardware.translate import FOREACH_MAX_ELEMS, FOREACH_MAX_TENSORS, Policy, policy_for, translate
from ccprof.profiler.flops import FlopPass
from ccprof.profiler.memory import optimizer_section

CAT = load_catalog(user=False)
A100 = CAT["a100-80gb"]


def _record(model: nn.Module, x: torch.Tensor, opt: torch.optim.Optimizer | None = None) -> Profile:
    fp = FlopPass({"": model})
    fp.start()
    try:
        fp.set_phase("forward")
        loss = model(x).float().pow(2).mean()
        fp.set_phase("backward")
        loss.backward()
        if opt is not None:
            fp.set_phase("optimizer")
            opt.step()
    finally:
        flops, ops = fp.stop()
    return Profile(ops=ops, flops=flops, fusion=fp.fusion,
                   optimizer=optimizer_section([opt]) if opt is not None else None)


def test_cpu_adamw_becomes_foreach_launches():
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(60)])          # 120 parameter tensors
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    prof = _record(model, torch.randn(4, 8), opt)
    cpu_calls = sum(o.count for o in prof.ops if o.phase == "optimizer" and any(o.shapes))
    ks = [k for k in translate(prof, A100, Policy(optimizer="foreach")) if k.phase == "optimizer"]
    device = [k for k in ks if k.cls == "foreach"]
    assert device and all("_foreach_" in k.op for k in device)
    # each per-parameter op kind (120 calls) becomes ceil(120 / max tensors per launch) launches
    assert sum(k.calls for k in device) < cpu_calls / 10
    for k in device:
        assert k.calls <= math.ceil(120 / FOREACH_MAX_TENSORS[-1])
    # the step counters (0-dim, on the host with capturable=False) launch nothing
    host = [k for k in ks if k.cls == "host"]
    assert host and host[0].calls == 0 and host[0].dispatches == 120
    # bytes are kept: the same data moves, in fewer launches
    assert sum(k.nbytes for k in device) == sum(o.bytes for o in prof.ops if o.phase == "optimizer" and any(o.shapes))


def test_fused_adamw_reads_and_writes_each_state_once():
    prof = Profile(ops=[OpCost("aten.mul_", "float32", 100, 0, 400_000, 400_000, "optimizer",
                               shapes=[[1000], []], out_shapes=[[1000]])],
                   optimizer=OptimizerSection([OptimizerInfo(class_="AdamW", param_count=100_000)]))
    ks = translate(prof, A100, Policy(optimizer="fused"))
    (fused,) = [k for k in ks if k.cls == "fused_optimizer"]
    # param, grad, exp_avg, exp_avg_sq read, three written: 28 bytes per fp32 element
    assert fused.nbytes == 28 * 100_000
    assert fused.calls == max(1, math.ceil(100 / FOREACH_MAX_TENSORS[-2]), math.ceil(100_000 / FOREACH_MAX_ELEMS))


def test_for_loop_keeps_one_launch_per_parameter():
    prof = Profile(ops=[OpCost("aten.mul_", "float32", 100, 0, 400_000, 400_000, "optimizer",
                               shapes=[[1000], []], out_shapes=[[1000]])])
    (k,) = translate(prof, A100, Policy(optimizer="for_loop"))
    assert k.calls == 100


CONV = OpCost("aten.convolution", "float32", 1, 2 * 8 * 32 * 32 * 32 * 16 * 9, 0, 0, "forward",
              shapes=[[8, 16, 32, 32], [32, 16, 3, 3]], out_shapes=[[8, 32, 32, 32]])


def test_cudnn_tf32_is_on_by_default_on_cuda():
    prof = Profile(ops=[CONV], precision=Precision(cudnn_allow_tf32=True))
    assert policy_for(prof).tf32_cudnn is True
    (k,) = translate(prof, A100)
    assert k.unit == "tf32"
    (k,) = translate(prof, A100, Policy(tf32_cudnn=False))
    assert k.unit == "simt"
    (k,) = translate(prof, CAT["v100-16gb"])                # Volta has no TF32 units
    assert k.unit == "simt"
    # a CPU profile from before the flag was recorded: PyTorch's CUDA default (True)
    assert policy_for(Profile(ops=[CONV])).tf32_cudnn is True


def test_fp32_matmuls_use_tf32_only_as_the_script_set_it():
    mm = OpCost("aten.mm", "float32", 1, 2 * 512**3, 0, 0, "forward", shapes=[[512, 512], [512, 512]],
                out_shapes=[[512, 512]])
    assert translate(Profile(ops=[mm]), A100)[0].unit == "simt"
    high = Profile(ops=[mm], precision=Precision(float32_matmul_precision="high"))
    assert translate(high, A100)[0].unit == "tf32"


def test_autocast_runs_matmuls_16_bit_and_keeps_norms_fp32():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64), nn.LayerNorm(64))
    prof = _record(model, torch.randn(32, 64))
    by = {}
    for o in prof.ops:
        by.setdefault((o.op, o.phase), []).append(o)
    fwd_mm = by[("aten.addmm", "forward")]
    assert all(o.autocast == "low" for o in fwd_mm)
    # the GELU reads the first Linear's output: 16-bit under autocast, half its fp32 bytes
    (gelu,) = by[("aten.gelu", "forward")]
    assert gelu.autocast == "low" and gelu.autocast_bytes * 2 == gelu.bytes
    # LayerNorm is on autocast's fp32 list: it runs fp32 on an fp32 copy of its 16-bit input
    (ln,) = by[("aten.native_layer_norm", "forward")]
    assert ln.autocast == "fp32"
    casts = [o for o in prof.ops if o.autocast == "cast"]
    assert casts and all(o.op == "aten._to_copy" for o in casts)
    # the parameters are cast once each (autocast caches them): weights 64x256 and 256x64, biases
    # 256 and 64; each cast reads 4 bytes and writes 2 per element
    weight_casts = [o for o in casts if o.phase == "forward" and o.fixed]
    assert sorted(o.autocast_bytes for o in weight_casts) == sorted([64 * 6, 256 * 6, 64 * 256 * 6, 256 * 64 * 6])
    # the cost model: under autocast the GEMMs run on tensor cores, and casts appear
    ks = translate(prof, A100, Policy(autocast="bfloat16"))
    assert {k.unit for k in ks if k.cls == "gemm"} == {"tensor16"}
    assert any(k.op == "aten._to_copy" for k in ks)
    assert not any(k.op == "aten._to_copy" for k in translate(prof, A100, Policy()))


def test_virtual_autocast_bytes_match_real_cpu_autocast():
    """The profiler's virtual 16-bit tags against a real bf16 autocast run of the same model:
    within 15% of the bytes moved (CPU autocast keeps LayerNorm in bf16 where CUDA's is fp32)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 128))
    x = torch.randn(64, 128)
    virtual = sum(o.autocast_bytes for o in _record(model, x).ops if o.phase != "optimizer")
    model.zero_grad(set_to_none=True)            # no gradient accumulation in the second step
    fp = FlopPass({"": model})
    fp.start()
    try:
        fp.set_phase("forward")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(x).float().pow(2).mean()
        fp.set_phase("backward")
        loss.backward()
    finally:
        _, real_ops = fp.stop()
    real = sum(o.bytes for o in real_ops)
    assert virtual == pytest.approx(real, rel=0.15)


def test_cpu_sdpa_becomes_a_fused_attention_kernel():
    torch.manual_seed(0)

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(32, 96)

        def forward(self, x):
            q, k, v = self.qkv(x).view(2, 16, 3, 2, 16).permute(2, 0, 3, 1, 4)
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)

    prof = _record(Attn(), torch.randn(2, 16, 32))
    att = [o for o in prof.ops if "attention" in o.op]
    assert {o.phase for o in att} == {"forward", "backward"}
    assert all(o.attrs.get("causal") is True for o in att)
    ks = translate(prof, A100, Policy(autocast="bfloat16"))
    assert {k.unit for k in ks if k.cls.startswith("attention")} == {"tensor16"}
    assert {k.unit for k in translate(prof, A100, Policy()) if k.cls.startswith("attention")} == {"simt"}


def test_autocast_leaves_float64_alone_and_the_float32_lever_takes_it():
    """issue 20: autocast does not cast float64 tensors (is_eligible skips kDouble), so a float64
    model's step is the same with and without it; made float32 first, autocast acts."""
    from ccprof.hardware.edits import to_float32
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 1)).double()
    prof = _record(model, torch.randn(32, 64, dtype=torch.float64))
    ks = translate(prof, A100, Policy(autocast="bfloat16"))
    plain = translate(prof, A100, Policy())
    assert {k.dtype for k in ks if k.cls == "gemm"} == {"float64"}
    casts = [o for o in prof.ops if o.autocast == "cast"]
    assert casts and {o.dtype for o in casts} == {"float64"}        # what autocast would add once float32
    assert [k for k in ks if k.op == "aten._to_copy"] == [k for k in plain if k.op == "aten._to_copy"]   # none run
    assert sum(k.nbytes for k in ks) == sum(k.nbytes for k in plain)
    # the lever: float32 halves each float64 op's bytes; autocast then runs the matmuls in bf16
    ops32 = to_float32(prof.ops)
    assert sum(o.bytes for o in ops32) == sum(o.bytes_read // 2 + o.bytes_written // 2 if o.dtype == "float64"
                                              and o.autocast != "cast" else o.bytes for o in prof.ops)
    mixed = translate(Profile(ops=ops32), A100, Policy(autocast="bfloat16"))
    assert {k.dtype for k in mixed if k.cls == "gemm"} == {"bfloat16"}
    assert sum(1 for k in mixed if k.op == "aten._to_copy") > sum(1 for k in ks if k.op == "aten._to_copy")
