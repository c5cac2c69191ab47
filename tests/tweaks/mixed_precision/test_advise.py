from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from ccprof.artefacts.profile import Device, ModuleStat, OpCost
from ccprof.hardware import cost_step, load_catalog, policy_for
from ccprof.tweaks.mixed_precision.advise import project_mixed_precision_memory
from tests.helpers.profiles import hand_ops, hand_profile, llama, llama_batches, llama_plain, priced, run

MB = 10**6


def _conv_net(device: str):
    mods = [ModuleStat("", class_="Net", activation_bytes=300 * MB),
            ModuleStat("conv", class_="Conv2d", params=1_000_000, activation_bytes=100 * MB),
            ModuleStat("bn", class_="BatchNorm2d", activation_bytes=40 * MB),
            ModuleStat("fc", class_="Linear", params=1_000_000, activation_bytes=20 * MB),
            ModuleStat("ln", class_="LayerNorm", activation_bytes=60 * MB)]
    ops = [OpCost("aten.max_pool2d_with_indices", "float32", count=1, bytes_written=36 * MB),
           OpCost("aten._log_softmax", "float32", count=1, bytes_written=10 * MB)]
    return hand_profile(model=replace(hand_profile().model, modules=mods, linear_names=["fc"]),
                        ops=ops, device=Device(type=device))


def test_formula_memory_by_module():
    m = project_mixed_precision_memory(_conv_net("cuda"))
    # root's own 300 - (100 + 40 + 20 + 60) = 80 MB of functional ops; of those the max-pool
    # indices (36 x 8/12 = 24 MB, int64) and the loss's log-softmax (10 MB, fp32) stay.
    # Halve: conv 100 + fc 20 + bn 40 + root 80 - 34 = 206 MB; LayerNorm is on CUDA's fp32 list.
    assert m["halved_bytes"] == 206 * MB
    assert m["kept_bytes"] == 60 * MB + 34 * MB
    # 300 - 206/2 + bf16 copies of conv and fc weights (2M x 2 B)
    assert m["activations_after_bytes"] == 300 * MB - 103 * MB + 4 * MB
    # temporaries 100 MB: the loss's fp32 logit gradients (2 x 10 MB) stay, 80 MB halve
    assert m["other_after_bytes"] == 60 * MB
    assert m["memory_saved_bytes"] == 99 * MB + 40 * MB
    assert m["peak_bytes_after"] == 2000 * MB - 139 * MB


def test_layernorm_after_linear_follows_it_on_cpu():
    # CPU autocast has no norm on its fp32 list: a LayerNorm fed by a Linear gets bf16 input
    assert project_mixed_precision_memory(_conv_net("cpu"))["halved_bytes"] == (206 + 60) * MB


def test_time_is_the_step_re_costed_under_autocast():
    p = hand_profile()
    a = advise_one("mixed_precision", p)
    spec = load_catalog()["a100-80gb"]
    base = policy_for(p, spec)
    before = cost_step(p, spec, base)
    after = cost_step(p, spec, replace(base, autocast="bfloat16"))
    # the fp32 GEMMs move to bf16 tensor cores, the ReLUs read 16-bit activations, and the
    # parameters get their (cached) casts
    assert after.by_class["gemm"] < before.by_class["gemm"] / 4
    assert a.projected.time_saved_frac == pytest.approx(1 - after.step_s / before.step_s, abs=1e-6)
    assert a.projected.usd_saved == pytest.approx(10 * (1 - after.step_s / before.step_s), rel=1e-3)
    assert a.details["policy"] == {"autocast": "bfloat16"}
    assert a.risk == "numerics" and "autocast" in a.snippet


def test_fires_on_real_llama_priced():
    p = priced(llama_plain())
    a = advise_one("mixed_precision", p, AdviceContext(device_memory_bytes=p.memory.peak_bytes))   # memory is short
    assert a.status == "recommended" and a.projected.memory_saved_bytes > 0
    assert "%" in a.rationale and "Dollars" in a.rationale


def test_not_applicable_without_matmuls():
    elementwise = [o for o in hand_ops() if o.op == "aten.relu"]
    p = hand_profile(flops=replace(hand_profile().flops, by_op={"aten.add": 10**12}), ops=elementwise,
                     memory=replace(hand_profile().memory, activations_bytes=0))
    assert advise_one("mixed_precision", p).status == "not_applicable"


def test_already_applied_when_autocast_seen():
    from tests.helpers.profiles import Autocast

    p = run(Autocast(llama()), llama_batches(batch=2, seq=16))
    assert advise_one("mixed_precision", p).status == "already_applied", p.precision


FLOAT64_SRC = """
import torch
model = torch.nn.Sequential(torch.nn.Linear(256, 2048), torch.nn.Tanh(), torch.nn.Linear(2048, 2048), torch.nn.Tanh(),
                            torch.nn.Linear(2048, 1))
model = model.double()
"""


def test_float64_model_names_its_line_and_projects_float32_then_autocast():
    """issue 20: autocast leaves float64 alone; the lever is the script's `.double()`."""
    import torch
    import torch.nn.functional as F

    from ccprof.advisors._common import ledger, recost
    from ccprof.api import profile_model
    from ccprof.hardware.edits import to_float32
    from ccprof.profiler.static import static_facts_from_source
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 2048), torch.nn.Tanh(), torch.nn.Linear(2048, 2048),
                                torch.nn.Tanh(), torch.nn.Linear(2048, 1)).double()
    x = torch.randn(512, 256, dtype=torch.float64)
    p = profile_model(model, torch.optim.Adam(model.parameters()), [(x, x.sum(1, keepdim=True))], F.mse_loss,
                      steps=2, warmup=1)
    p = priced(replace(p, static=static_facts_from_source(FLOAT64_SRC)))
    assert p.precision.param_dtype == "float64" and p.static.float64 and p.static.lines["float64"] == 5
    ctx = AdviceContext(gpu="a100-80gb")
    a = advise_one("mixed_precision", p, ctx)
    assert a.status == "recommended" and a.risk == "numerics", a.rationale
    assert "`model.double()` at line 5" in a.rationale and "Autocast leaves float64 tensors alone" in a.rationale
    # autocast alone: the float64 step is unchanged (no op is eligible)
    alone = recost(p, ctx, policy={"autocast": "bfloat16"})
    assert alone.after.step_s == pytest.approx(alone.before.step_s)
    # the lever: float32 ops (half the bytes), then autocast, costed by the cost model
    lever = recost(p, ctx, ops=to_float32(p.ops), policy={"autocast": "bfloat16"})
    assert a.projected.time_saved_frac == pytest.approx(lever.frac) and lever.frac > 0
    # sane memory: float32 halves the ledger; autocast halves activations and adds bf16 weight copies;
    # never negative, activations never above the peak
    led = ledger(p)
    d = a.details
    assert d["peak_bytes_float32"] == led.peak // 2
    assert 0 < a.projected.peak_bytes_after < led.peak
    assert a.projected.peak_bytes_after <= led.peak // 2 + d["weight_cache_bytes"] + d["input_copy_bytes"]
    assert d["activations_after_bytes"] <= a.projected.peak_bytes_after


def test_memory_projection_is_never_negative_when_the_ledger_overcounts_activations():
    """A ledger whose activations exceed its peak must not give a negative peak."""
    from ccprof.artefacts.profile import Memory
    p = _conv_net("cuda")
    p = replace(p, memory=Memory(peak_bytes=200 * MB, params_bytes=20 * MB, grads_bytes=20 * MB,
                                 optimizer_state_bytes=40 * MB, activations_bytes=408 * MB, other_bytes=100 * MB))
    m = project_mixed_precision_memory(p)
    assert m["peak_bytes_after"] >= 20 * MB + 40 * MB            # parameters and optimizer state stay
    assert 0 <= m["activations_after_bytes"] <= m["peak_bytes_after"]
