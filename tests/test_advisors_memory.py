"""Memory projections against memory measured with the tweak applied by hand.

Each test profiles the same tiny Llama twice with ``profile_model``: once plain, once with
the tweak applied by hand; the advisor's projected peak must be within 15% of the second
profile's measured ``memory.peak_bytes``.
"""
from __future__ import annotations

import pytest
import torch

from ccprof.advisors import AdviceContext, advise_one
from test_advisors_models import llama, llama_batches, llama_plain, run

TOLERANCE = 0.15


def close(projected: int, measured: int) -> bool:
    return abs(projected - measured) <= TOLERANCE * measured


class Autocast(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, **kw):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.m(**kw)


def test_mixed_precision_peak_within_15pct():
    a = advise_one("mixed_precision", llama_plain())
    assert a.status == "recommended"
    measured = run(Autocast(llama()), llama_batches()).memory.peak_bytes
    assert close(a.projected.peak_bytes_after, measured), (a.projected.peak_bytes_after, measured)


def test_checkpointing_peak_within_15pct():
    p = llama_plain()
    a = advise_one("checkpointing", p, AdviceContext(device_memory_bytes=p.memory.peak_bytes))  # memory is short
    assert a.status == "recommended"
    model = llama()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    measured = run(model, llama_batches()).memory.peak_bytes
    assert close(a.projected.peak_bytes_after, measured), (a.projected.peak_bytes_after, measured)


def test_lora_peak_within_15pct():
    from peft import LoraConfig, get_peft_model

    a = advise_one("lora", llama_plain(), AdviceContext(lora_rank=8))
    assert a.status == "recommended"
    model = get_peft_model(llama(), LoraConfig(r=8, target_modules="all-linear"))
    measured = run(model, llama_batches()).memory.peak_bytes
    assert close(a.projected.peak_bytes_after, measured), (a.projected.peak_bytes_after, measured)
    # the adapters' size: r x (in + out) per targeted Linear, approximated within 10%
    real = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert abs(a.details["adapter_params"] - real) <= 0.1 * real


def test_warm_start_peak_within_15pct():
    a = advise_one("warm_start", llama_plain())
    assert a.status == "recommended"
    model = llama()
    model.model.embed_tokens.weight.requires_grad_(False)
    measured = run(model, llama_batches()).memory.peak_bytes
    assert close(a.projected.peak_bytes_after, measured), (a.projected.peak_bytes_after, measured)


def test_grad_accumulation_half_micro_batch_within_15pct():
    base = llama_plain()
    # a device where batch 8 does not fit but 4 does: 90% of it sits between the two peaks
    from ccprof.advisors.grad_accumulation import peak_bytes_at_batch
    half = peak_bytes_at_batch(base, 4)
    device = int((half + base.memory.peak_bytes) / 2 / 0.9)
    a = advise_one("grad_accumulation", base, AdviceContext(device_memory_bytes=device))
    assert a.status == "recommended"
    assert (a.details["micro_batch"], a.details["accum_steps"]) == (4, 2)
    measured = run(llama(), llama_batches(batch=4)).memory.peak_bytes
    assert close(a.projected.peak_bytes_after, measured), (a.projected.peak_bytes_after, measured)
