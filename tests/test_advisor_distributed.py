from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from ccprof.advisors.distributed import project_ddp
from ccprof.profiler.profile import Device, StaticFacts
from test_advisors_models import hand_profile, llama_plain, priced


def test_formula_ring_allreduce():
    r = project_ddp(1.0, 10**9, 4, 100e9, exposed_frac=0.5)
    # 2 x 3/4 x 1e9 / 100e9 = 15 ms; 0.25 + 0.5 x 0.015 = 0.2575 s
    assert r["comm_s"] == pytest.approx(0.015)
    assert r["step_s_after"] == pytest.approx(0.2575)


def test_fires_on_unused_gpus():
    p = hand_profile(device=Device(type="cuda", name="A100", count=4, capability="8.0", memory_bytes=80 * 10**9))
    a = advise_one("distributed", p)
    # grads 400 MB over NVLink 600 GB/s: comm 2 x 3/4 x 0.4/600 s = 1 ms; step 0.25 + 0.5 ms
    assert a.status == "recommended" and a.details["case"] == "unused_gpus"
    assert a.projected.step_s_after == pytest.approx(0.2505, rel=1e-3)
    # you pay for 4 GPUs today: 4 x $10 x (1 - 0.2505) saved
    assert a.projected.usd_saved == pytest.approx(40 * (1 - 0.2505), rel=1e-3)


def test_fires_on_real_llama_with_gpus_visible():
    # a real CPU profile, told that 2 GPUs were visible (the profiler's multi-GPU merge is elsewhere)
    a = advise_one("distributed", priced(llama_plain()), AdviceContext(gpus=2))
    assert a.status == "recommended" and a.projected.time_saved_frac > 0.4


def test_data_parallel_and_no_sync():
    p = replace(llama_plain(), static=StaticFacts(data_parallel=True, lines={"data_parallel": 9}))
    a = advise_one("distributed", p)
    assert a.status == "recommended" and "DataParallel" in a.rationale and a.projected.usd_saved == 0
    p = replace(llama_plain(), static=StaticFacts(ddp=True, accumulation=True))
    assert advise_one("distributed", p).details["case"] == "no_sync"


def test_fsdp_when_state_outgrows_the_device():
    a = advise_one("distributed", hand_profile(), AdviceContext(device_memory_bytes=10**9))
    # state 1.6 GB > 0.9 GB usable: shard over ceil(1.6/0.9)+1 = 3 GPUs
    assert a.status == "recommended" and a.details["case"] == "fsdp" and a.details["gpus"] == 3


def test_not_applicable_and_already_applied():
    assert advise_one("distributed", priced(llama_plain())).status == "not_applicable"
    p = replace(llama_plain(), static=StaticFacts(ddp=True))
    assert advise_one("distributed", p).status == "already_applied"
