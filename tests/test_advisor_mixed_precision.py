from dataclasses import replace

import pytest
import torch

from ccprof.advisors import advise_one
from ccprof.advisors.mixed_precision import project_mixed_precision_memory
from ccprof.profiler.profile import GpuProjection, ModuleStat
from test_advisors_models import hand_profile, llama, llama_batches, llama_plain, priced, run

MB = 10**6


def test_formula_memory_by_module():
    mods = [ModuleStat("", class_="Net", activation_bytes=300 * MB),
            ModuleStat("fc", class_="Linear", params=1_000_000, activation_bytes=200 * MB),
            ModuleStat("ln", class_="LayerNorm", activation_bytes=60 * MB)]
    p = hand_profile(model=replace(hand_profile().model, modules=mods, linear_names=["fc"]))
    m = project_mixed_precision_memory(p)
    # Linear's 200 MB halve; LayerNorm's 60 and the root's own 40 stay; + 1M x 2 B of bf16 weights
    assert m["halved_bytes"] == 200 * MB
    assert m["activations_after_bytes"] == 300 * MB - 100 * MB + 2 * MB
    assert m["memory_saved_bytes"] == 98 * MB


def test_time_from_the_hardware_projection():
    p = hand_profile(projection={"a100-80gb": GpuProjection(step_s=1.0, step_s_bf16=0.4, fits=True)})
    a = advise_one("mixed_precision", p)
    # 1 - 0.4/1.0 = 60% of the step, $10 run -> $6
    assert a.projected.time_saved_frac == pytest.approx(0.6)
    assert a.projected.usd_saved == pytest.approx(6.0)
    assert a.risk == "numerics" and "autocast" in a.snippet


def test_fires_on_real_llama_priced():
    a = advise_one("mixed_precision", priced(llama_plain()))
    assert a.status == "recommended" and a.projected.memory_saved_bytes > 0
    assert "%" in a.rationale and "Dollars" in a.rationale


def test_not_applicable_without_matmuls():
    p = hand_profile(flops=replace(hand_profile().flops, by_op={"aten.add": 10**12}),
                     memory=replace(hand_profile().memory, activations_bytes=0))
    assert advise_one("mixed_precision", p).status == "not_applicable"


def test_already_applied_when_autocast_seen():
    class Amp(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, **kw):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.m(**kw)

    p = run(Amp(llama()), llama_batches(batch=2, seq=16))
    assert advise_one("mixed_precision", p).status == "already_applied", p.precision
