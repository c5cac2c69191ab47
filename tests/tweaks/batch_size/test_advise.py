
import pytest

from ccprof.advisors import AdviceContext, advise_one
from ccprof.hardware import cost_step, load_catalog
from ccprof.hardware.edits import scale_batch
from ccprof.tweaks.batch_size.advise import largest_batch
from tests.helpers.profiles import hand_profile, llama_plain, priced

MB = 10**6


def test_formula():
    p = hand_profile()
    # state 1600 MB, 50 MB per sample: budget 2700 -> (2700 - 1600) / 50 = 22
    assert largest_batch(p, 2700 * MB) == 22
    a = advise_one("batch_size", p, AdviceContext(device_memory_bytes=3000 * MB))
    assert a.details["batch_after"] == 22
    # per-sample time from the cost model: the step at batch 8 and at 22 (every op's batch
    # dimension scaled, the optimizer and the loop's 0.1 s of host glue per step unchanged)
    spec = load_catalog()["a100-80gb"]
    before = cost_step(p, spec).step_s
    after = cost_step(p, spec, ops=scale_batch(p.ops, 22 / 8)).step_s
    assert before < after < before * 22 / 8            # some of the step is fixed per step
    assert a.projected.time_saved_frac == pytest.approx(1 - (after / 22) / (before / 8), abs=1e-6)
    assert a.details["time_scope"] == "run"               # fewer, longer steps for the same samples
    assert a.projected.peak_bytes_after == 2000 * MB + 400 * MB * (22 / 8 - 1)
    assert a.risk == "convergence"


def test_fires_on_real_llama_on_an_a100():
    a = advise_one("batch_size", priced(llama_plain()))
    assert a.status == "recommended" and a.details["batch_after"] == 64        # 8x cap


def test_without_a_price_the_target_is_the_stated_default_gpu():
    # a CPU profile with no cost attached is advised for the hardware stage's default GPU
    a = advise_one("batch_size", llama_plain())
    assert a.status == "recommended" and "A100" in a.rationale


def test_already_applied_when_memory_is_full():
    p = hand_profile()
    assert advise_one("batch_size", p, AdviceContext(device_memory_bytes=2100 * MB)).status == "already_applied"
