from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from ccprof.advisors._common import gpu_spec
from ccprof.artefacts.profile import Device, DryRun, StaticFacts
from ccprof.hardware import cost_step, load_catalog
from ccprof.hardware.catalog import GpuSpec
from ccprof.hardware.comm import ddp_comm
from ccprof.hardware.projection import memory_fit_for
from ccprof.tweaks.distributed.advise import project_ddp
from tests.helpers.profiles import as_dry_run, hand_profile, llama_plain, priced

MB = 10**6
MiB = 1 << 20

# 200 GB/s interconnect (both ways): 100 GB/s each way
LINKED = GpuSpec("toy", "Toy", 10**10, 1e12, {"fp32": 1e13}, interconnect_bytes_per_s=200e9)


def test_formula_ring_allreduce():
    # 1 GB of gradients over 4 GPUs in 25 MiB buckets (39), backward 0.5 s:
    # total 2 x 3/4 x 1e9 / (0.77 x 100e9) + 39 x 2 x 3 x 5 us = 0.0194805 + 0.00117 s;
    # exposed: the last bucket, 2 x 3/4 x 26,214,400 / 77e9 + 6 x 5 us = 0.00054066 s
    r = project_ddp(1.0, 0.5, 10**9, 4, LINKED)
    assert r["comm_s"] == pytest.approx(0.0194805 + 0.00117, rel=1e-4)
    assert r["exposed_comm_s"] == pytest.approx(0.00054066, rel=1e-4)
    assert r["step_s_after"] == pytest.approx(1.00054066, rel=1e-6)
    # four steps' progress per step: (1 + e) / (4 x 1) of the wall time
    assert r["wall_time_saved_frac"] == pytest.approx(1 - 1.00054066 / 4, rel=1e-6)


def test_fires_on_unused_gpus():
    p = hand_profile(device=Device(type="cuda", name="A100", count=4, capability="8.0", memory_bytes=80 * 10**9))
    a = advise_one("distributed", p)
    spec = load_catalog()["a100-80gb"]
    model = cost_step(p, spec)
    c = ddp_comm(p.memory.grads_bytes, 4, spec, model.phase_s["backward"])
    assert a.status == "recommended" and a.details["case"] == "unused_gpus"
    # each GPU's step grows by the exposed all-reduce (the measured 1 s step scaled by the model's ratio)
    assert a.projected.step_s_after == pytest.approx((model.step_s + c.exposed_s) / model.step_s, rel=1e-6)
    # you pay for 4 GPUs today: 4 x $10 x the wall time saved
    wall = 1 - (model.step_s + c.exposed_s) / (4 * model.step_s)
    assert a.projected.usd_saved == pytest.approx(40 * wall, rel=1e-3)


def test_fires_on_real_llama_with_gpus_visible():
    # a real CPU profile, told that 2 GPUs were visible (the profiler's multi-GPU merge is elsewhere)
    a = advise_one("distributed", priced(llama_plain()), AdviceContext(gpus=2))
    assert a.status == "recommended" and a.projected.time_saved_frac > 0.4


def test_data_parallel_and_no_sync():
    p = replace(llama_plain(), static=StaticFacts(data_parallel=True, lines={"data_parallel": 9}))
    a = advise_one("distributed", p)
    # DataParallel -> DDP without a multi-GPU profile: named, but no saving projected, so not "recommended"
    assert a.status == "no_saving" and "DataParallel" in a.rationale and a.projected.usd_saved == 0
    assert a.rationale.startswith("No projected saving")
    p = replace(llama_plain(), static=StaticFacts(ddp=True, accumulation=True))
    assert advise_one("distributed", p).details["case"] == "no_sync"


def test_fsdp_when_state_outgrows_the_device():
    a = advise_one("distributed", hand_profile(), AdviceContext(device_memory_bytes=10**9))
    # state 1.6 GB > 0.9 GB usable; each GPU keeps activations 0.3 + other 0.1 GB beside its shard, so a
    # shard may be 0.5 GB: ceil(1.6 / 0.5) = 4 GPUs, peak 0.8 GB each (3 would peak at 0.93 GB: over)
    assert a.status == "recommended" and a.details["case"] == "fsdp" and a.details["gpus"] == 4
    assert a.projected.peak_bytes_after == 800 * 10**6 and a.details["memory_fit_after"]["fits"]


def test_not_applicable_and_already_applied():
    assert advise_one("distributed", priced(llama_plain())).status == "not_applicable"
    p = replace(llama_plain(), static=StaticFacts(ddp=True))
    assert advise_one("distributed", p).status == "already_applied"


def test_a_dry_runs_state_that_does_not_fit_one_gpu_is_sharded_over_the_gpus_the_rule_fits():
    """Hand profile as a dry run, reserved 2,100 MB at its 2,000 MB peak, on a 2.2 GB GPU: model state
    1.6 GB is 73% of it (under the tensors' 90%), but alone its reserve (2,100 + 1,600 - 2,000 = 1,700 MB)
    + the 512 MiB context is 2,236,870,912 B: over. Sharded, each GPU also holds its world's NCCL buffers
    (960 MiB), the context, the reserve's 100 MB over the tensors and 400 MB of activations and
    temporaries: 2.2e9 - 1,006,632,960 - 536,870,912 - 100e6 - 400e6 = 156,496,128 B for a shard,
    ceil(1.6e9 / 156,496,128) = 11 GPUs."""
    p = hand_profile(dry_run=DryRun(nproc=1))
    p = replace(p, memory=replace(p.memory, reserved_peak_bytes=2100 * MB))
    ctx = AdviceContext(device_memory_bytes=2200 * MB)
    spec = gpu_spec(p, ctx)
    state = 1600 * MB
    assert state < 0.9 * spec.memory_bytes and not memory_fit_for(p, spec, state).fits
    a = advise_one("distributed", p, ctx)
    assert a.status == "recommended" and a.details["case"] == "fsdp" and a.details["gpus"] == 11
    per = lambda n: -(-state // n) + 400 * MB          # noqa: E731
    assert memory_fit_for(p, spec, per(11), groups=((11, 1),)).fits
    assert not memory_fit_for(p, spec, per(10), groups=((10, 1),)).fits
    assert a.details["memory_fit_after"]["parts"]["nccl"] == 960 * MiB
    assert "NCCL buffers 960 MiB" in a.rationale


def test_a_dry_run_whose_context_leaves_no_room_is_not_sharded_into_a_fit():
    """The tiny Llama as a dry run on a 515 MiB GPU: its 1.8 MB of model state is far under 90%, but with
    its reserve and the 512 MiB context it does not fit one GPU (the report's rule), and no number of GPUs
    helps: each adds 960 MiB of NCCL buffers. The advisor says both and recommends nothing."""
    dry = as_dry_run(llama_plain())
    ctx = AdviceContext(device_memory_bytes=515 * MiB)
    spec = gpu_spec(dry, ctx)
    m = dry.memory
    state = m.params_bytes + m.grads_bytes + m.optimizer_state_bytes
    assert state < 0.9 * spec.memory_bytes and not memory_fit_for(dry, spec, state).fits
    a = advise_one("distributed", dry, ctx)
    assert a.status == "not_applicable" and a.details["case"] == "fsdp"
    assert a.details["memory_fit"] == memory_fit_for(dry, spec, state).as_dict()
    assert not a.details["memory_fit_after"]["fits"] and "does not bring it under" in a.rationale
    # measured, the tensors' rule fits the state: one device, nothing to distribute
    assert advise_one("distributed", llama_plain(), ctx).details["case"] == "single"
