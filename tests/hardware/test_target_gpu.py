"""The one target-GPU resolver (``ccprof.hardware.target_gpu``): its precedence, and that the
hardware stage and the advisors answer the same for the same profile."""
from __future__ import annotations

import pytest

from ccprof.advisors import AdviceContext
from ccprof.advisors._common import target_gpu as advisors_target_gpu
from ccprof.artefacts.profile import Device, Flops, Memory, Profile, Steps
from ccprof.hardware import DEFAULT_GPU, attach, load_catalog, target_gpu

CAT = load_catalog(user=False)


def _profile(device: Device) -> Profile:
    return Profile(flops=Flops(per_step=5 * 10**12), steps=Steps(step_s=[0.05, 0.05], samples_per_step=8),
                   memory=Memory(peak_bytes=10**9), device=device)


CPU = Device(type="cpu", name="x86_64")
H100 = Device(type="cuda", name="NVIDIA H100 80GB HBM3")


def test_precedence_flag_then_costed_then_device_then_default():
    cpu, gpu = _profile(CPU), _profile(H100)
    # 4. nothing named, nothing costed, no GPU in use: the stated default
    gid, why = target_gpu(cpu, CAT)
    assert gid == DEFAULT_GPU and "profiled without a GPU" in why
    # 3. the GPU the profile ran on, matched by its driver name
    assert target_gpu(gpu, CAT) == ("h100-sxm", "device in use")
    # 1. the flag wins over everything, resolved by name or prefix
    assert target_gpu(gpu, CAT, "L4") == ("l4", "--gpu")
    # 2. a profile costed on --gpu l4 keeps l4 (and why) when re-costed without --gpu
    costed = attach(gpu, catalog=CAT, gpu="l4")
    assert costed.cost.gpu == "l4"
    assert target_gpu(costed, CAT) == ("l4", "--gpu")
    assert attach(costed, catalog=CAT, total_steps=1000).cost.gpu == "l4"
    # ... unless the catalog no longer has it
    without_l4 = {k: v for k, v in CAT.items() if k != "l4"}
    assert target_gpu(costed, without_l4)[0] == "h100-sxm"
    with pytest.raises(ValueError, match="unknown GPU"):
        target_gpu(gpu, CAT, "no-such-gpu")


@pytest.mark.parametrize("device", [CPU, H100])
@pytest.mark.parametrize("flag", [None, "l4", "h100-sxm"])
def test_advisors_and_hardware_agree(device, flag):
    prof = _profile(device)
    costed = attach(prof, catalog=CAT, gpu=flag)
    for p in (prof, costed):
        ctx = AdviceContext(catalog=CAT)
        assert advisors_target_gpu(p, ctx) == target_gpu(p, CAT)[0]
    # a flag given to the advisors over a profile costed elsewhere wins there too
    assert advisors_target_gpu(costed, AdviceContext(gpu="a10g", catalog=CAT)) == "a10g"
    assert costed.cost.gpu == target_gpu(prof, CAT, flag)[0]
