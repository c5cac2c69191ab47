"""--verify on a real script: tweaks applied to the live run in a fresh process, measured."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from ccprof.api import RUN_PLUGINS
from ccprof.applier.verify import VERIFY_SEED, pick_tweaks, verify
from ccprof.artefacts.advice import Advice, AdviceSet, Plan, Projected
from ccprof.artefacts.tweaks import measurable_here
from ccprof.profiler.hooks import StopProfiling
from ccprof.profiler.runner import run_script
from tests.helpers.paths import ROOT

GPT = ROOT / "examples" / "gpt_loop.py"
ARGS = ["--n-layer", "4", "--batch-size", "8"]
PLAN = dict(steps=3, warmup=1, timeout_s=240, seed=VERIFY_SEED)


@pytest.fixture(scope="module")
def baseline():
    r = run_script(GPT, ARGS, **PLAN)
    assert r.exit_code == 0, r.message
    return r.profile


def run_one(tweaks, options):
    return run_script(GPT, ARGS, tweak=tweaks, tweak_options=options, plugins=RUN_PLUGINS, **PLAN).profile


def test_checkpointing_measured_against_projection(baseline):
    peak = baseline.memory.peak_bytes
    advice = AdviceSet(advice=[
        Advice("checkpointing", status="recommended",
               projected=Projected(time_saved_frac=-0.2, memory_saved_bytes=1, peak_bytes_after=peak - 1)),
        Advice("finetune", status="recommended"),              # not applicable at run time: skipped
    ])
    picked, skipped = pick_tweaks(advice, 3, baseline)
    assert picked == ["checkpointing"] and "pretrained checkpoint" in skipped["finetune"]
    out = verify(run_one, baseline, advice, k=3)
    m = out.by_tweak()["checkpointing"].measured
    assert m is not None and m.peak_bytes and m.step_s
    # recomputation keeps only block boundaries: the activations of 4 blocks mostly go
    assert m.memory_saved_bytes > 0
    assert m.peak_bytes < peak
    assert m.memory_error_frac == pytest.approx((peak - 1 - m.peak_bytes) / m.peak_bytes)
    # same seed, same data: the loss is the same to float rounding, and the guard agrees
    assert abs(m.loss_delta) < 1e-3 and not m.harmful
    assert "CPU" in m.note and m.usd_saved is None
    assert out.by_tweak()["finetune"].measured is None


def test_same_seed_baseline_is_reproducible(baseline):
    again = run_script(GPT, ARGS, **PLAN).profile
    n = min(len(again.steps.loss), len(baseline.steps.loss))     # timed steps may go on past --steps
    assert n >= 3 and again.steps.loss[:n] == pytest.approx(baseline.steps.loss[:n], abs=1e-5)
    assert again.memory.peak_bytes == baseline.memory.peak_bytes


def test_plan_runs_all_runtime_tweaks_once(baseline):
    advice = AdviceSet(
        advice=[Advice("mixed_precision", status="recommended"), Advice("checkpointing", status="recommended")],
        plan=Plan(tweaks=["mixed_precision", "checkpointing", "right_size_gpu"], step_s_before=1.0,
                  step_s_after=0.5, peak_bytes_before=baseline.memory.peak_bytes,
                  peak_bytes_after=baseline.memory.peak_bytes // 2))
    out = verify(run_one, baseline, advice, plan=True)
    m = out.plan.measured
    assert m is not None and m.peak_bytes
    assert "right_size_gpu" in m.note                          # said, not silently dropped
    assert m.time_error_frac == pytest.approx(0.5 - m.time_saved_frac)


@pytest.mark.slow
def test_cli_verify_writes_measured_into_advice_json(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(GPT), "--quiet", "--steps", "3",
                           "--warmup", "1", "--verify", "3", "--out", str(tmp_path), "--", *ARGS],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "advice.json").read_text())
    measured = [a for a in data["advice"] if a.get("measured")]
    # the top three recommended tweaks a re-run can apply, or as many as the advice recommends
    prof = json.loads((tmp_path / "profile.json").read_text())
    here = (prof["device"]["type"], bool(prof["data"]["dataloader_seen"]))
    picked = [a["tweak"] for a in data["advice"] if a["status"] == "recommended" and measurable_here(a["tweak"], *here)[0]]
    assert len(measured) == min(3, len(picked)) >= 2, picked     # tf32 needs CUDA, batch_size a DataLoader
    # each re-run either measured its peak or says why the tweak could not be applied to this script
    assert any((a["measured"]["peak_bytes"] or 0) > 0 for a in measured)
    for a in measured:
        assert (a["measured"]["peak_bytes"] or 0) > 0 or "could not apply" in a["measured"]["note"], a


def test_bad_verify_value_is_usage_error():
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(GPT), "--verify", "lots"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--verify takes" in proc.stderr


# --- issue 6: --verify on the Hugging Face Trainer example ------------------------------
HF = ROOT / "examples" / "hf_trainer.py"
HF_ARGS = ["--eval-steps", "1000", "--logging-steps", "1000"]


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=4, vocab_size=256))


def _batch(n=4, t=16):
    ids = torch.randint(0, 256, (n, t), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def test_first_forward_sees_keyword_arguments():
    # model(**batch), as the HF Trainer calls it: the global pre-hook gets no kwargs from
    # torch, so the first-forward tweaks saw no labels and the example input was empty
    from ccprof.profiler.hooks import Session

    model = _tiny_llama()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    seen = {}
    session = Session(steps=1, warmup=1, passes=False,
                      on_first_forward=lambda s, m, a, kw: seen.update(model=m, kwargs=dict(kw)))
    session.install()
    try:
        with pytest.raises(StopProfiling):
            for _ in range(3):
                model(**_batch()).loss.backward()
                opt.step()
                opt.zero_grad()
    finally:
        session.uninstall()
    assert seen["model"] is model and set(seen["kwargs"]) == {"input_ids", "attention_mask", "labels"}
    data = session.build_data()
    assert (data.batch_size, data.seq_len, data.token_inputs) == (4, 16, True)


def test_lora_extends_the_lr_scheduler_of_its_optimizer():
    # a LambdaLR built before the adapter group zips its lambdas with the groups strictly:
    # the HF Trainer's run died at the first scheduler.step() and measured nothing
    from ccprof.applier.runtime import RunObjects, apply_tweak

    model = _tiny_llama()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (step + 1))
    r = apply_tweak("lora", RunObjects(model, [opt], schedulers=[sched]))
    assert r.applied and any("LR scheduler" in c for c in r.changes), r.reason
    assert len(sched.lr_lambdas) == len(sched.base_lrs) == len(opt.param_groups) == 2
    model(**_batch()).loss.backward()
    opt.step()
    sched.step()
    sched.step()
    # the adapter group follows the same schedule as the group it copied: 1e-2 / 3
    assert opt.param_groups[-1]["lr"] == pytest.approx(1e-2 / 3)


def test_grad_accumulation_with_num_items_in_batch_keeps_the_loss():
    # the HF Trainer passes num_items_in_batch: each micro-batch loss is already divided by the
    # whole batch's token count, so the micro-batch losses add (weighting them halved the loss)
    from ccprof.applier.runtime import RunObjects, apply_tweak

    batch = {**_batch(), "num_items_in_batch": torch.tensor(4 * 15)}
    full = _tiny_llama()(**batch).loss
    model = _tiny_llama()
    r = apply_tweak("grad_accumulation", RunObjects(model, [], example_kwargs=batch), {"micro_batches": 2})
    assert r.applied, r.reason
    assert model(**batch).loss.item() == pytest.approx(full.item(), rel=1e-5)


@pytest.fixture(scope="module")
def hf_baseline():
    r = run_script(HF, HF_ARGS, stdout=subprocess.DEVNULL, **PLAN)
    assert r.exit_code == 0, r.message
    return r.profile


def _hf_run(tweak, options=None):
    r = run_script(HF, HF_ARGS, tweak=[tweak], tweak_options={tweak: options or {}},
                   stdout=subprocess.DEVNULL, plugins=RUN_PLUGINS, **PLAN)
    entry = next(e for e in r.profile.applied if e["tweak"] == tweak)
    return r, entry


def test_hf_trainer_lora_run_has_a_ledger_within_15pct_of_projection(hf_baseline):
    from dataclasses import replace as _replace

    from ccprof.advisors import AdviceContext
    from ccprof.api import advise, attach_costs

    # a device the peak fills: LoRA's memory is needed, so it is recommended with what it projects
    # (the example's tiny Llama as if loaded from a checkpoint: LoRA adapts pretrained weights, and
    # no published Llama fits these widths from scratch)
    tight = AdviceContext(device_memory_bytes=hf_baseline.memory.peak_bytes)
    loaded = _replace(hf_baseline, model=_replace(hf_baseline.model, pretrained=True, loaded_from="from_pretrained:tiny"))
    lora = advise(attach_costs(loaded), tight).by_tweak()["lora"]
    assert lora.options["rank"] and lora.options["targets"]          # what was projected is what runs
    r, entry = _hf_run("lora", lora.options)
    assert r.exit_code == 0 and entry["applied"], (r.message, entry)
    mem = r.profile.memory
    assert mem.peak_bytes > 0 and 0 < mem.grads_bytes < hf_baseline.memory.grads_bytes
    projected = lora.projected.peak_bytes_after
    assert projected and abs(projected - mem.peak_bytes) / mem.peak_bytes <= 0.15


def test_hf_trainer_grad_accumulation_applied_at_run_time(hf_baseline):
    r, entry = _hf_run("grad_accumulation", {"steps": 2})
    assert r.exit_code == 0 and entry["applied"], (r.message, entry)
    assert 0 < r.profile.memory.peak_bytes < hf_baseline.memory.peak_bytes
    # same seed, same data: the Trainer's loss is the full batch's, not a micro-batch share
    n = min(len(r.profile.steps.loss), len(hf_baseline.steps.loss))    # timed steps may go on past --steps
    assert n >= 3 and r.profile.steps.loss[:n] == pytest.approx(hf_baseline.steps.loss[:n], rel=1e-3)


def test_time_differences_within_step_noise_are_said_to_be_noise():
    from dataclasses import replace as _replace

    from ccprof.applier.verify import measure
    from ccprof.artefacts.profile import Memory, Profile, Steps

    # recorded CPU times: the baseline's median 1.0 s in [0.8, 1.2] (five values: the whole range,
    # +-20%), a re-run's 0.95 s in [0.94, 0.96] (+-1.05%): a 5% difference inside the 21.1% band
    base = Profile(steps=Steps(step_s=[9.0] * 5, step_cpu_s=[0.8, 0.9, 1.0, 1.1, 1.2], loss=[2.0, 1.9, 1.8]),
                   memory=Memory(peak_bytes=1000))
    close = _replace(base, steps=_replace(base.steps, step_cpu_s=[0.94, 0.95, 0.96]))
    m = measure(base, close, None, None, None)
    assert m.time_saved_frac == pytest.approx(0.05) and m.time_band_frac == pytest.approx(0.2 + 0.01 / 0.95)
    assert "within the two runs' own spread (±21.1%): no measurable change here" in m.note
    assert m.clock == "cpu" and "CPU time of the main thread" in m.note     # not the wall time (9 s)
    far = _replace(base, steps=_replace(base.steps, step_cpu_s=[0.49, 0.5, 0.51]))
    m = measure(base, far, None, None, None)
    assert m.time_saved_frac == pytest.approx(0.5) and "time saved +50.0% ±22.0%" in m.note
