"""MFU's peak: the math units the step's matmuls run on, as the profile recorded them."""
from __future__ import annotations

from dataclasses import replace

from ccprof.hardware.catalog import load_catalog
from tests.helpers.profiles import hand_profile

CAT = load_catalog()



def test_mfu_peak_follows_the_dtype_the_matmuls_ran_in_without_autocast():
    """FSDP2's MixedPrecisionPolicy keeps fp32 parameters and runs its matmuls in bf16 without
    autocast: MFU is measured against the bf16 peak (the fp32 one had given MFUs over 100%)."""
    from ccprof.hardware.projection import compute_peak
    from ccprof.hardware.translate import policy_for
    spec = CAT["h100-sxm"]
    base = hand_profile()
    assert compute_peak(base, spec, policy_for(base, spec))[1] == "fp32"
    bf16 = replace(base, ops=[replace(o, dtype="bfloat16") if o.op == "aten.mm" else o for o in base.ops])
    peak, key = compute_peak(bf16, spec, policy_for(bf16, spec))
    assert key == "bf16" and peak == spec.peak_flops["bf16"]
