"""Profile one training step of a published workload at its real size, here, on the CPU.

GPT-2 at 8 x 1024 tokens or ResNet-50 at batch 256 would take minutes per step on this 2-core
machine, so the step runs on PyTorch's ``meta`` device: every aten op dispatches with its real
shapes and dtypes and computes nothing. ccprof's own FLOP pass (``ccprof.profiler.flops``)
records it exactly as ``ccprof analyze`` does on a real CPU run, and the host cost per op is
measured on this machine (``ccprof.profiler.host``). What a meta step cannot give (timings,
the memory ledger, data) the projection does not use.

One difference from a CPU run is patched here: ``F.scaled_dot_product_attention`` on meta
tensors takes the math path (bmm + softmax), while on a CPU it runs
``_scaled_dot_product_flash_attention_for_cpu``; the patch calls that op, which the cost model
translates to FlashAttention on the GPU, as it does for a CPU profile.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ccprof.artefacts.profile import ModelInfo, Precision, Profile, Steps
from ccprof.profiler.flops import FlopPass
from ccprof.profiler.host import measure_host
from ccprof.profiler.memory import optimizer_section

__all__ = ["record_step", "cpu_sdpa_on_meta"]


@contextlib.contextmanager
def cpu_sdpa_on_meta():
    """Route scaled_dot_product_attention to the CPU flash op, as a real CPU run would."""
    orig = F.scaled_dot_product_attention

    def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
        if attn_mask is None and q.device.type == "meta":
            return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, dropout_p, is_causal)[0]
        return orig(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, **kw)

    F.scaled_dot_product_attention = sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = orig


def record_step(model: torch.nn.Module, step: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer, *,
                samples: int, tokens: int | None = None, tf32_matmul: bool = False,
                cudnn_tf32: bool = True) -> Profile:
    """One step through ccprof's FLOP pass: ``step()`` runs forward and returns the loss.

    Output: a Profile with the op list (shapes, autocast tags, fusion groups), FLOPs, the
    optimizer, this host's dispatch costs and the script's TF32 settings: what the cost model
    reads. ``samples``/``tokens`` per step label it.
    """
    fp = FlopPass({"": model})
    with cpu_sdpa_on_meta():
        fp.start()
        try:
            fp.set_phase("forward")
            loss = step()
            fp.set_phase("backward")
            loss.backward()
            fp.set_phase("optimizer")
            optimizer.step()
            fp.set_phase("other")
            optimizer.zero_grad(set_to_none=True)
        finally:
            flops, ops = fp.stop()
    n = sum(p.numel() for p in model.parameters())
    return Profile(
        ops=ops, flops=flops, fusion=fp.fusion, optimizer=optimizer_section([optimizer]),
        host=measure_host(fp.module_calls),
        model=ModelInfo(class_=type(model).__name__, params=n, trainable_params=n),
        steps=Steps(samples_per_step=samples, tokens_per_step=tokens, micro_batches=1),
        precision=Precision(param_dtype="float32", tf32_matmul=tf32_matmul, cudnn_allow_tf32=cudnn_tf32,
                            float32_matmul_precision="high" if tf32_matmul else "highest"),
    )


def meta_tokens(batch: int, seq: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.randint(0, vocab, (batch, seq), device="meta"),
            torch.randint(0, vocab, (batch, seq), device="meta"))


def describe(profile: Profile) -> dict[str, Any]:
    return {"flops_per_step": profile.flops.per_step, "ops": len(profile.ops), "params": profile.model.params}
