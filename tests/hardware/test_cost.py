"""Cost arithmetic, planned-run sizing, right-sizing and attach() on hand-built profiles."""
from __future__ import annotations

import dataclasses

import pytest

from ccprof.artefacts.profile import DataInfo, Device, Flops, GpuInfo, Memory, OpCost, Profile, StaticFacts, Steps
from ccprof.hardware import DEFAULT_GPU, attach, cost_for, load_catalog, right_size, run_steps
from ccprof.hardware.catalog import GpuSpec
from ccprof.hardware.cost import steps_per_epoch

# 3.6 $/h = 0.001 $/s; 10 TFLOP/s fp32, so 5e12 FLOPs/step -> 0.5 s/step (flops-only path)
TOY = GpuSpec("toy", "Toy GPU", memory_bytes=10 * 10**9, bandwidth_bytes_per_s=1e12,
              peak_flops={"fp32": 10e12, "bf16": 100e12}, usd_per_hour=3.6,
              price_source="test", price_date="2026-01-01")
CAT = {"toy": TOY}


def _profile(**kw) -> Profile:
    base = dict(flops=Flops(per_step=5 * 10**12),
                steps=Steps(step_s=[9.0], samples_per_step=8, tokens_per_step=1024),
                data=DataInfo(token_inputs=True, steps_per_epoch=100),
                memory=Memory(peak_bytes=10**9))
    base.update(kw)
    return Profile(**base)


def test_unit_economics():
    c = cost_for(_profile(), "toy", CAT)
    assert c.gpu == "toy" and c.usd_per_hour == 3.6 and c.price_date == "2026-01-01"
    assert c.step_s == pytest.approx(0.5)                    # 5e12 / 10e12
    assert c.usd_per_step == pytest.approx(0.0005)           # 3.6 * 0.5 / 3600
    assert c.usd_per_1k_steps == pytest.approx(0.5)
    assert c.usd_per_1k_samples == pytest.approx(0.0625)     # 0.0005 / 8 * 1000
    assert c.usd_per_1m_tokens == pytest.approx(0.48828125)  # 0.0005 / 1024 * 1e6
    assert c.samples_per_s == pytest.approx(16.0)            # 8 / 0.5
    assert c.tokens_per_s == pytest.approx(2048.0)
    assert c.steps_per_epoch == 100
    assert c.usd_per_epoch == pytest.approx(0.05)            # 0.0005 * 100
    # nothing says the run size: no run is invented, and the source says what would help
    assert c.run_steps == 0 and c.run_steps_source.startswith("unknown")
    assert "one epoch would be 100 steps" in c.run_steps_source and "--total-steps" in c.run_steps_source
    assert c.usd_run == 0 and c.run_hours == 0
    assert c.detail["label"] == "Toy GPU at $3.60/GPU-hour, priced 2026-01-01"


def test_total_steps_epochs_and_bf16():
    c = cost_for(_profile(), "toy", CAT, total_steps=10_000)
    assert c.usd_run == pytest.approx(5.0)                   # 0.0005 * 10,000
    assert c.run_hours == pytest.approx(10_000 * 0.5 / 3600)  # 1.3889 h
    assert c.run_steps_source == "--total-steps 10000"
    c = cost_for(_profile(), "toy", CAT, epochs=2.5)
    assert c.run_steps == 250                                # 2.5 * 100
    # bf16 autocast: 5e12 / 100e12 = 0.05 s -> 3.6 * 0.05 / 3600 = 5e-5 $/step
    c = cost_for(_profile(), "toy", CAT, bf16=True)
    assert c.usd_per_step == pytest.approx(5e-5)


def test_price_override_and_num_gpus():
    c = cost_for(_profile(), "toy", CAT, price_usd=7.2)
    assert c.usd_per_step == pytest.approx(0.001)            # 7.2 * 0.5 / 3600
    assert c.price_source == "--price"
    c = cost_for(_profile(), "toy", CAT, num_gpus=4)
    assert c.usd_per_step == pytest.approx(0.002)            # 4 GPUs billed
    with pytest.raises(ValueError, match="--price"):
        cost_for(_profile(), "toy", CAT, price_usd=0)


def test_tokens_and_samples_are_optional():
    prof = _profile(data=DataInfo(token_inputs=False), steps=Steps(samples_per_step=None, tokens_per_step=512))
    c = cost_for(prof, "toy", CAT)
    assert c.usd_per_1m_tokens is None and c.tokens_per_s is None
    assert c.usd_per_1k_samples is None and c.samples_per_s is None
    assert c.usd_per_epoch is None
    assert c.run_steps == 0 and "unknown" in c.run_steps_source


def test_unpriced_gpu_asks_for_a_price():
    cat = {"toy": dataclasses.replace(TOY, usd_per_hour=None)}
    with pytest.raises(ValueError, match="--price"):
        cost_for(_profile(), "toy", cat)
    assert cost_for(_profile(), "toy", cat, price_usd=1.8).usd_per_step == pytest.approx(0.00025)


def test_run_steps_from_trainer_arguments():
    trainer = StaticFacts(hf_trainer=True, training_args={"max_steps": 750})
    assert run_steps(_profile(static=trainer)) == (750, "TrainingArguments(max_steps=750)")
    trainer = StaticFacts(hf_trainer=True, training_args={"num_train_epochs": 2})
    assert run_steps(_profile(static=trainer))[0] == 200     # 2 * 100
    trainer = StaticFacts(hf_trainer=True, training_args={"max_steps": -1})
    n, why = run_steps(_profile(static=trainer))
    assert n == 300 and "default num_train_epochs=3" in why  # HF's default 3 epochs * 100
    # --total-steps beats the Trainer's own number
    assert run_steps(_profile(static=trainer), total_steps=42)[0] == 42


def test_epochs_without_steps_per_epoch_says_so():
    n, why = run_steps(_profile(data=DataInfo()), epochs=3)
    assert n == 0 and "steps per epoch are unknown" in why


def test_steps_per_epoch_accounts_for_accumulation():
    # 800 samples / batch 8 = 100 batches; 4 micro-batches per optimizer step -> 25 steps
    prof = _profile(data=DataInfo(steps_per_epoch=100, dataset_len=800, batch_size=8),
                    steps=Steps(micro_batches=4))
    assert steps_per_epoch(prof) == 25
    prof = _profile(data=DataInfo(steps_per_epoch=25, dataset_len=800, batch_size=8),
                    steps=Steps(micro_batches=4))
    assert steps_per_epoch(prof) == 25                       # already optimizer steps


def test_right_size_ranks_by_run_cost_and_time():
    cheap = dataclasses.replace(TOY, id="cheap", name="Cheap", usd_per_hour=1.0)      # 0.5 s/step
    fast = dataclasses.replace(TOY, id="fast", name="Fast", usd_per_hour=10.0,
                               peak_flops={"fp32": 50e12})                             # 0.1 s/step
    small = dataclasses.replace(TOY, id="small", name="Small", memory_bytes=10**9,
                                usd_per_hour=0.1)                                       # 1 GB: no fit
    rows = right_size(_profile(), {"fast": fast, "cheap": cheap, "small": small}, total_steps=3600)
    assert [r["gpu"] for r in rows] == ["cheap", "fast"]
    # cheap: 3600 * 0.5 s = 0.5 h * $1 = $0.50; fast: 3600 * 0.1 s = 0.1 h * $10 = $1.00
    assert rows[0]["usd_run"] == pytest.approx(0.5) and rows[0]["hours"] == pytest.approx(0.5)
    assert rows[1]["usd_run"] == pytest.approx(1.0) and rows[1]["hours"] == pytest.approx(0.1)
    assert (rows[0]["rank_usd"], rows[0]["rank_time"]) == (1, 2)
    assert (rows[1]["rank_usd"], rows[1]["rank_time"]) == (2, 1)


def _llama_like_ops() -> list[OpCost]:
    sq = [[2048, 2048], [2048, 2048]]          # 2 * 2048^3 = 1.7e10 FLOPs a call
    return [OpCost("aten.mm.default", "float32", 42, 42 * 2 * 2048**3, 42 * 2**25, 42 * 2**24, "forward",
                   shapes=sq, out_shapes=[[2048, 2048]], autocast="low", autocast_bytes=42 * 3 * 2**23),
            OpCost("aten.mm.default", "float32", 84, 84 * 2 * 2048**3, 84 * 2**25, 84 * 2**24, "backward",
                   shapes=sq, out_shapes=[[2048, 2048]], autocast="low", autocast_bytes=84 * 3 * 2**23),
            OpCost("aten.mul.Tensor", "float32", 60, 0, 8 * 10**6, 4 * 10**6, "forward"),
            OpCost("aten._foreach_add_.List", "float32", 2, 0, 4 * 10**6, 2 * 10**6, "optimizer")]


def test_attach_cpu_profile_uses_stated_default_and_round_trips():
    prof = _profile(ops=_llama_like_ops(), device=Device(type="cpu", name="x86_64"))
    cat = load_catalog(user=False)
    out = attach(prof, catalog=cat, total_steps=5000)
    assert set(out.projection) == set(cat) and len(cat) >= 12
    assert out.cost.gpu == DEFAULT_GPU
    assert "profiled without a GPU" in out.cost.detail["gpu_choice"]
    for gid, p in out.projection.items():
        assert p.step_s > 0 and p.step_s_bf16 > 0 and p.fits and p.mfu is not None, gid
        assert p.step_s_bf16 < p.step_s                          # fp32 matmuls become bf16/fp16
    assert out.cost.run_steps == 5000
    back = Profile.from_json(out.to_json())
    assert back.projection["h100-sxm"].step_s == out.projection["h100-sxm"].step_s
    assert back.cost == out.cost
    d = out.to_dict()
    for key in ("step_s", "step_s_bf16", "fits", "mfu"):
        assert key in d["projection"]["l4"]
    for key in ("gpu", "usd_per_hour", "price_date", "usd_per_step", "usd_per_1k_steps",
                "usd_per_1k_samples", "usd_per_1m_tokens", "run_steps", "usd_run"):
        assert key in d["cost"]


def test_attach_gpu_profile_costs_the_gpu_in_use_with_energy():
    prof = _profile(ops=_llama_like_ops(), device=Device(type="cuda", name="NVIDIA H100 80GB HBM3"),
                    steps=Steps(step_s=[0.05, 0.05], samples_per_step=8),
                    gpu=GpuInfo(energy_j_per_step=7.0))
    out = attach(prof, catalog=load_catalog(user=False), gpu=None)
    assert out.cost.gpu == "h100-sxm" and out.device.catalog_id == "h100-sxm"
    assert out.cost.detail["gpu_choice"] == "device in use"
    assert out.cost.step_s == pytest.approx(0.05)                # measured is the truth
    assert out.cost.usd_per_step == pytest.approx(6.88 * 0.05 / 3600)
    assert out.cost.energy_j_per_step == 7.0
    assert out.projection["h100-sxm"].method == "measured"
    assert out.projection["l4"].method == "calibrated"           # the model, scaled by H100 measured/modelled
    # L4 has far less bandwidth and compute than the H100: it must come out slower
    assert out.projection["l4"].step_s > out.projection["h100-sxm"].step_s
    # --gpu picks another target; energy is only known for the GPU that measured it
    other = attach(prof, catalog=load_catalog(user=False), gpu="L4", price_usd=0.5)
    assert other.cost.gpu == "l4" and other.cost.usd_per_hour == 0.5
    assert other.cost.energy_j_per_step is None


def test_attach_unknown_gpu_lists_known_ids():
    with pytest.raises(ValueError, match="Known ids:.*h100-sxm"):
        attach(_profile(), catalog=load_catalog(user=False), gpu="tpu-v9")


def test_attach_with_nothing_to_cost_says_why():
    out = attach(Profile(), catalog=load_catalog(user=False))
    assert out.cost is None and "no step time" in out.reasons["cost"]
    assert out.projection["h100-sxm"].step_s is None


def test_right_size_reuses_the_attached_price_and_run_size():
    cheap = dataclasses.replace(TOY, id="cheap", name="Cheap", usd_per_hour=1.0)
    cat = {"toy": TOY, "cheap": cheap}
    out = attach(_profile(), catalog=cat, gpu="toy", price_usd=0.36, epochs=3)
    rows = right_size(out, cat)
    by_id = {r["gpu"]: r for r in rows}
    # 300 steps (3 epochs * 100) * 0.5 s = 150 s; toy at the --price 0.36 $/h: 0.36 * 150/3600 = $0.015
    assert by_id["toy"]["usd_run"] == pytest.approx(0.015) and by_id["toy"]["usd_per_hour"] == 0.36
    assert by_id["cheap"]["usd_run"] == pytest.approx(150 / 3600)   # $1/h
    assert rows[0]["gpu"] == "toy" and rows[0]["run_steps_source"].startswith("--epochs 3")


def test_run_steps_from_the_scripts_own_limits():
    from ccprof.artefacts.profile import RunLimit

    # the loop around the optimizer step beats a limit-named setting; within a tier the
    # first limit the loop reaches wins
    lims = [RunLimit("steps", 5000, "argparse --max-steps", 3.0),
            RunLimit("steps", 200, "loop: for it in range(200) (train.py:40)", 2.0),
            RunLimit("epochs", 3, "loop: for epoch in range(3) (train.py:38)", 2.1)]
    n, why = run_steps(_profile(run_limits=lims))
    assert (n, why) == (200, "loop: for it in range(200) (train.py:40)")
    lims[1] = RunLimit("steps", 1000, "loop: for it in range(1000) (train.py:40)", 2.0)
    n, why = run_steps(_profile(run_limits=lims))
    assert n == 300 and why.endswith("x 100 steps/epoch")          # 3 epochs x 100 < 1000
    # a framework trainer's own count is most direct
    lims.append(RunLimit("steps", 42, "Trainer.state.max_steps", 1.0))
    assert run_steps(_profile(run_limits=lims)) == (42, "Trainer.state.max_steps")
    # --total-steps beats everything
    assert run_steps(_profile(run_limits=lims), total_steps=7)[0] == 7


def test_epoch_limits_need_a_finite_loader():
    from ccprof.artefacts.profile import RunLimit

    # a sampler that draws forever has no epoch: an epoch limit cannot size the run
    lims = [RunLimit("epochs", 2, "argparse --epochs", 3.0)]
    forever = DataInfo(steps_per_epoch=1_250_000_000, finite=False)
    n, why = run_steps(_profile(data=forever, run_limits=lims))
    assert n == 0 and why.startswith("unknown")
    assert steps_per_epoch(_profile(data=forever)) is None
    n, _ = run_steps(_profile(run_limits=lims))
    assert n == 200                                                 # finite: 2 x 100


def test_unknown_run_ranks_gpus_per_step():
    cheap = dataclasses.replace(TOY, id="cheap", name="Cheap", usd_per_hour=1.0)      # 0.5 s/step
    fast = dataclasses.replace(TOY, id="fast", name="Fast", usd_per_hour=10.0,
                               peak_flops={"fp32": 50e12})                             # 0.1 s/step
    rows = right_size(_profile(data=DataInfo()), {"fast": fast, "cheap": cheap})
    assert [r["gpu"] for r in rows] == ["cheap", "fast"]            # $/step 1.4e-4 < 2.8e-4
    assert all(r["usd_run"] == 0 and r["run_steps"] == 0 for r in rows)
    assert [r["rank_time"] for r in rows] == [2, 1]
