from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from ccprof.advisors._common import gpu_spec
from ccprof.artefacts.profile import DryRun
from ccprof.hardware import cost_step, load_catalog
from ccprof.hardware.edits import micro_batches, scale_batch
from ccprof.hardware.projection import memory_fit_for
from ccprof.tweaks.grad_accumulation.advise import micro_batch_plan, peak_bytes_at_batch
from tests.helpers.profiles import as_dry_run, hand_profile, llama_plain, priced

MB = 10**6
MiB, GiB = 1 << 20, 1 << 30


def test_formula_peak_at_batch():
    p = hand_profile()
    # params 400 + optimizer 800 = 1200 MB stay; the rest of the 2000 MB peak, 800, scales
    # (no gradient is alive yet at the start of backward): batch 4 run whole -> 1200 + 800 x 4/8 = 1600
    assert peak_bytes_at_batch(p, 4) == 1600 * MB
    # micro-batch 4 of 2: the first micro-batch's 400 MB of gradients stay -> 1600 + 400 = 2000
    assert peak_bytes_at_batch(p, 4, accum_steps=2) == 2000 * MB


def test_formula_micro_batch_plan():
    p = hand_profile()
    # budget 1800 MB: fixed 1200 + 400 gradients = 1600; (1800 - 1600) / (800 / 8 = 100 MB per sample)
    # = 2 -> micro 2 x 4 steps for batch 8, peak 1600 + 2 x 100 = 1800
    plan = micro_batch_plan(p, 8, 1800 * MB)
    assert (plan["micro_batch"], plan["accum_steps"]) == (2, 4)
    assert plan["peak_bytes_after"] == 1800 * MB
    a = advise_one("grad_accumulation", p, AdviceContext(device_memory_bytes=2000 * MB))
    # 90% of 2000 MB = 1800 MB budget; peak 2000 does not fit
    assert a.status == "recommended" and a.projected.peak_bytes_after == 1800 * MB
    # time: 4 passes of micro-batch 2 (and three gradient adds) against one pass of batch 8
    spec = load_catalog()["a100-80gb"]
    whole = cost_step(p, spec).step_s
    micro = cost_step(p, spec, ops=micro_batches(scale_batch(p.ops, 8 / 8), 4)).step_s
    assert micro > whole
    assert a.projected.time_saved_frac == pytest.approx(1 - micro / whole, abs=1e-6)


def test_fires_on_llama_on_a_small_device():
    p = llama_plain()
    a = advise_one("grad_accumulation", p, AdviceContext(device_memory_bytes=int(p.memory.peak_bytes * 0.8)))
    assert a.status == "recommended" and a.details["accum_steps"] >= 2


def test_not_applicable_when_it_fits():
    assert advise_one("grad_accumulation", priced(llama_plain())).status == "not_applicable"


def test_already_applied_with_micro_batches():
    p = llama_plain()
    p = replace(p, steps=replace(p.steps, micro_batches=4))
    assert advise_one("grad_accumulation", p).status == "already_applied"


def test_nothing_fits_says_what_next():
    p = hand_profile()
    a = advise_one("grad_accumulation", p, AdviceContext(device_memory_bytes=1000 * MB))
    assert a.status == "not_applicable" and "checkpointing" in a.rationale


def test_closure_backwards_are_not_accumulation():
    """issue 20: LBFGS re-evaluates its closure (a backward after zero_grad() each time) inside one
    step; grad_accumulation does not apply and says why."""
    from ccprof.artefacts.profile import OptimizerInfo, OptimizerSection
    p = hand_profile()
    p = replace(p, steps=replace(p.steps, micro_batches=1, closure_backwards=5),
                optimizer=OptimizerSection([OptimizerInfo(class_="LBFGS", param_count=161)]))
    a = advise_one("grad_accumulation", p)
    assert a.status == "not_applicable"
    assert a.rationale.startswith("5 backward passes per optimizer step ran inside LBFGS.step(closure)")
    assert "re-evaluations" in a.rationale and "quasi-Newton" in a.rationale


def test_a_dry_run_that_does_not_fit_is_accumulated_though_its_tensors_are_under_ninety_percent():
    """The tiny Llama as a dry run on a 520 MiB GPU: its tensors' peak (8.6 MB) is 2% of it, but the
    reserved 10 MiB + the 512 MiB CUDA context are 2 MiB over: the report's verdict, and now the advisor's."""
    dry = as_dry_run(llama_plain())
    ctx = AdviceContext(device_memory_bytes=520 * MiB)
    spec = gpu_spec(dry, ctx)
    assert dry.memory.peak_bytes < 0.9 * spec.memory_bytes and not memory_fit_for(dry, spec).fits
    a = advise_one("grad_accumulation", dry, ctx)
    assert a.status == "recommended" and a.details["accum_steps"] >= 2
    assert a.details["memory_fit"] == memory_fit_for(dry, spec).as_dict()
    assert memory_fit_for(dry, spec, a.projected.peak_bytes_after).fits
    assert "does not fit, 2.00 MiB over the 520 MiB on the GPU (reserved 10.0 MiB + CUDA context 512 MiB)" in a.rationale
    # measured, the same step keeps the tensors' rule: it fits, nothing to accumulate
    assert advise_one("grad_accumulation", llama_plain(), ctx).status == "not_applicable"


def test_a_dry_run_over_ninety_percent_that_the_reserved_rule_fits_is_not_accumulated():
    """The reverse: a 70 GiB peak is 94% of an 80 GB H100 (over the tensors' 90%), but its reserved 70.5 GiB
    + the 512 MiB context are 71 GiB of the 74.5 GiB: it fits, as the report says."""
    p = hand_profile(dry_run=DryRun(nproc=1))
    p = replace(p, memory=replace(p.memory, peak_bytes=70 * GiB, other_bytes=70 * GiB - 1900 * MB,
                                  reserved_peak_bytes=70 * GiB + 512 * MiB))
    ctx = AdviceContext(gpu="h100-sxm")
    spec = gpu_spec(p, ctx)
    assert p.memory.peak_bytes > 0.9 * spec.memory_bytes and memory_fit_for(p, spec).fits
    a = advise_one("grad_accumulation", p, ctx)
    assert a.status == "not_applicable" and a.details["memory_fit"]["fits"]
    # 80e9 - (70.5 GiB + 512 MiB) = 3,764,330,496 B to spare
    assert "fits, 3.51 GiB to spare of the 74.5 GiB on the GPU" in a.rationale
