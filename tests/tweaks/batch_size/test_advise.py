
from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from ccprof.advisors._common import gpu_spec
from ccprof.artefacts.profile import CallSite, OptimizerInfo, OptimizerSection, Profile
from ccprof.artefacts.tweaks import BatchSizeOptions
from ccprof.hardware import cost_step, load_catalog
from ccprof.hardware.edits import scale_batch
from ccprof.hardware.projection import memory_fit_for
from ccprof.tweaks.batch_size.advise import largest_batch
from tests.helpers.profiles import as_dry_run, hand_profile, llama_plain, priced

MB = 10**6
MiB = 1 << 20


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
    # the contract (same samples): 10,000 planned steps at batch 8 become round(10,000 x 8 / 22) =
    # 3,636 at batch 22, each after / before as long; dollars = $10 x that
    assert a.details["run_steps_after"] == 3636
    cost_after = (after / before) * 3636 / 10_000
    assert a.projected.time_saved_frac == pytest.approx(1 - cost_after, abs=1e-6)
    assert a.projected.usd_saved == pytest.approx(10.0 * (1 - cost_after), abs=1e-4)
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


def test_lbfgs_is_not_applicable_and_says_why():
    p = hand_profile(optimizer=OptimizerSection([OptimizerInfo(class_="LBFGS", param_count=100_000_000)], 0))
    a = advise_one("batch_size", p, AdviceContext(device_memory_bytes=3000 * MB))
    assert a.status == "not_applicable" and a.options == {}
    assert "LBFGS" in a.rationale and "whole training set" in a.rationale and "closure" in a.rationale


def test_never_a_batch_above_the_training_set():
    # 22 would fit (test_formula), but the map-style dataset holds 20 samples: capped at 20
    p = hand_profile(data=replace(Profile().data, batch_size=8, dataset_len=20))
    a = advise_one("batch_size", p, AdviceContext(device_memory_bytes=3000 * MB))
    assert a.details["batch_after"] == 20 and a.options["batch_size"] == 20
    assert "capped at the training set's 20 samples" in a.rationale
    # a batch that already holds the whole set has nothing larger to go to
    full = hand_profile(data=replace(Profile().data, batch_size=20, dataset_len=20))
    b = advise_one("batch_size", full, AdviceContext(device_memory_bytes=3000 * MB))
    assert b.status == "not_applicable" and "whole training set (20 samples" in b.rationale


def test_the_rationale_states_the_contract_the_lr_and_the_dollars():
    adam = OptimizerSection([OptimizerInfo(class_="AdamW", param_count=100_000_000, state_bytes=800 * MB,
                                           hyperparams={"lr": 0.001, "initial_lr": 0.0004})], 800 * MB)
    a = advise_one("batch_size", hand_profile(optimizer=adam), AdviceContext(device_memory_bytes=3000 * MB))
    # k = 22 / 8 = 2.75; the script's lr (a scheduler's initial_lr) 4e-4 x sqrt(2.75) = 6.633e-4
    assert a.options == {"batch_size": 22, "keep": "samples", "lr_rule": "sqrt"}
    assert a.details["lr_after"] == pytest.approx(0.0004 * 2.75 ** 0.5)
    assert "0.0004 -> 0.0006633" in a.rationale and "Malladi et al. 2022" in a.rationale
    assert "the planned 10,000 steps become 3,636" in a.rationale
    assert "span 3,636 steps" in a.rationale                   # the schedule's new length
    # dollars = new step x new steps x price: $3.60/h, 1 s x step ratio per step
    ratio = a.details["step_s_ratio"]
    assert a.details["usd_run_after"] == pytest.approx(3636 * 1.0 * ratio * 3.6 / 3600)
    assert a.projected.step_s_after == pytest.approx(ratio)
    assert f"= ${a.details['usd_run_after']:.2f}, from $10.00" in a.rationale
    sgd = OptimizerSection([OptimizerInfo(class_="SGD", param_count=100_000_000, hyperparams={"lr": 0.1})], 0)
    b = advise_one("batch_size", hand_profile(optimizer=sgd), AdviceContext(device_memory_bytes=3000 * MB))
    assert b.options["lr_rule"] == "linear" and "0.1 -> 0.275" in b.rationale and "Goyal et al. 2017" in b.rationale


def test_keep_steps_prices_the_same_steps_at_the_longer_step():
    ctx = AdviceContext(device_memory_bytes=3000 * MB, options={"batch_size": BatchSizeOptions(keep="steps")})
    a = advise_one("batch_size", hand_profile(), ctx)
    ratio = a.details["step_s_ratio"]
    # 10,000 steps each `ratio` as long: the run costs more, and says so
    assert a.details["run_steps_after"] == 10_000 and a.status == "no_saving"
    assert a.details["no_saving"]["cost_saved_frac"] == pytest.approx(1 - ratio, abs=1e-6)
    assert "trains on 2.75x the samples" in a.rationale and "batch_keep=samples" in a.rationale


SCRIPT = """\
import torch

batch_size = 8
max_iters = 10000
model = torch.nn.Linear(4, 4)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for it in range(max_iters):
    loss = model(torch.randn(batch_size, 4)).sum()
    loss.backward()
    optimizer.step()
"""


def test_the_advice_and_the_rewrite_agree_on_the_contract_and_its_dollars():
    """The hand profile is this script's run (batch 8, 10,000 steps from `max_iters`, SGD at lr 0.1):
    the rewrite from the advice's options writes the batch, steps and lr the advice priced."""
    from ccprof.applier.codemods import apply_source
    sgd = OptimizerSection([OptimizerInfo(class_="SGD", param_count=100_000_000, hyperparams={"lr": 0.1})], 0)
    for keep in ("samples", "steps"):
        ctx = AdviceContext(device_memory_bytes=3000 * MB, options={"batch_size": BatchSizeOptions(keep=keep)})
        a = advise_one("batch_size", hand_profile(optimizer=sgd), ctx)
        # keep=steps costs more (no_saving, no options kept): the same figures from its details
        options = a.options or {k: a.details[d] for k, d in (("batch_size", "batch_after"), ("keep", "keep"),
                                                             ("lr_rule", "lr_rule"))}
        assert options["keep"] == keep and options["lr_rule"] == "linear"
        out = apply_source(SCRIPT, ["batch_size"], tweak_options={"batch_size": BatchSizeOptions(**options)})
        written = {}
        exec(compile("\n".join(out.source.splitlines()[:4]), "<rewrite>", "exec"), {}, written)
        steps = written["max_iters"]
        assert written["batch_size"] == a.details["batch_after"] == 22
        assert steps == a.details["run_steps_after"] == (3636 if keep == "samples" else 10_000)
        assert f"lr={a.details['lr_after']:.6g})" in out.source and "lr=0.275)" in out.source
        # the advice's dollars are the rewritten run's: its steps x the larger batch's step x $3.60/h
        assert a.details["usd_run_after"] == pytest.approx(steps * a.details["step_s_ratio"] * 1.0 * 3.6 / 3600)


def test_a_run_limited_in_epochs_keeps_them_at_whole_batches_per_epoch():
    from ccprof.artefacts.profile import RunLimit
    from ccprof.tweaks.batch_size.advise import run_steps_after
    # 3 epochs of 40 samples at batch 8 = 15 steps; at batch 16 each epoch is ceil(40 / 16) = 3
    # batches: 9 steps, as the rewritten script (epochs kept) runs them, not round(15 / 2) = 8
    p = hand_profile(data=replace(Profile().data, batch_size=8, dataset_len=40, steps_per_epoch=5),
                     run_limits=[RunLimit("epochs", 3.0, "args.epochs=3", 3)])
    assert run_steps_after(p, AdviceContext(), 15, 8, 16, "samples") == 9
    assert run_steps_after(p, AdviceContext(), 15, 8, 16, "steps") == 15
    # a run limited in steps divides them
    assert run_steps_after(hand_profile(), AdviceContext(), 10_000, 8, 16, "samples") == 5000


def _data(**kw) -> Profile:
    return hand_profile(data=replace(Profile().data, batch_size=8, **kw))


def test_a_batch_every_step_repeats_is_full_batch_and_names_what_to_change():
    # the profiler hashed 3 steps' inputs and all were the same 8 samples (a batch made once)
    a = advise_one("batch_size", _data(same_inputs=True, input_steps=3, distinct_samples=8, input_shape=[8, 16]),
                   AdviceContext(device_memory_bytes=3000 * MB))
    assert a.status == "not_applicable" and a.options == {}
    assert "Full-batch" in a.rationale and "same 8 samples" in a.rationale and "[8, 16]" in a.rationale
    assert "needs more data, not a setting" in a.rationale and "DataLoader with batch_size=" in a.rationale
    # the training steps' call of the model, where the sites recorded it, is named
    site = CallSite(what="forward", file="train.py", line=42, role="train")
    b = advise_one("batch_size", replace(_data(same_inputs=True, input_steps=3, distinct_samples=8), sites=[site]),
                   AdviceContext(device_memory_bytes=3000 * MB))
    assert "(the model's call at train.py:42)" in b.rationale
    # different inputs step after step: the usual advice (22, test_formula)
    c = advise_one("batch_size", _data(same_inputs=False, input_steps=3, distinct_samples=24),
                   AdviceContext(device_memory_bytes=3000 * MB))
    assert c.status == "recommended" and c.details["batch_after"] == 22


def test_an_unbatched_input_is_not_a_batch():
    a = advise_one("batch_size", _data(unbatched_input=True, input_shape=[4]),
                   AdviceContext(device_memory_bytes=3000 * MB))
    assert a.status == "not_applicable" and "no batch dimension" in a.rationale and "[N, 4]" in a.rationale
    assert any("torch.nn.Linear" in s for s in a.sources)


def test_the_batch_keeps_two_steps_an_epoch():
    # one epoch of the script's loops holds 3 steps of 8 = 24 samples: 22 would leave it one step
    # (every step the same samples), so the batch stops at 24 / 2 = 12
    src = "one epoch of range(0, n, 30) (train.py:9): 3 steps x 8 samples"
    a = advise_one("batch_size", _data(epoch_samples=24, epoch_samples_source=src),
                   AdviceContext(device_memory_bytes=3000 * MB))
    assert a.status == "recommended" and a.details["batch_after"] == 12 and a.options["batch_size"] == 12
    assert f"capped at 12, half of the 24 samples one epoch holds ({src})" in a.rationale
    assert any("at least 2 mini-batches" in x for x in a.assumptions)
    # an epoch of 2 batches: no larger batch keeps 2 steps; the batch is as large as the data allows
    b = advise_one("batch_size", _data(epoch_samples=16, epoch_samples_source=src),
                   AdviceContext(device_memory_bytes=3000 * MB))
    assert b.status == "already_applied" and b.options == {} and "more data" in b.rationale
    assert b.details["batch_cap"] == 8


def test_a_dry_runs_largest_batch_is_the_reports_fit_not_ninety_percent_of_the_gpu():
    """On a dry run the fit is the caching allocator's reserved peak + the CUDA context (512 MiB) against
    the whole GPU. On a 530 MiB GPU the tiny Llama's 8.6 MB tensors' peak is under 90% at any batch up to
    the 8x cap, but 530 - 512 MiB leaves 18 MiB for the reserve, which runs ~1.9 MB above the tensors."""
    dry = as_dry_run(llama_plain())
    ctx = AdviceContext(device_memory_bytes=530 * MiB)
    spec = gpu_spec(dry, ctx)
    a = advise_one("batch_size", dry, ctx)
    nb, b = a.details["batch_after"], a.details["batch_before"]
    m = dry.memory
    at = lambda n: int(m.peak_bytes + (m.activations_bytes + m.other_bytes) * (n / b - 1))   # noqa: E731
    assert a.projected.peak_bytes_after == at(nb)
    # the largest batch the one rule fits: the same verdict as memory_fit_for, one more sample is over
    assert memory_fit_for(dry, spec, at(nb)).fits and not memory_fit_for(dry, spec, at(nb + 1)).fits
    assert a.details["memory_fit_after"] == memory_fit_for(dry, spec, at(nb)).as_dict()
    assert b < nb < 8 * b and at(8 * b) < 0.9 * spec.memory_bytes       # 90% of the GPU would take the 8x cap
    assert "reserved" in a.rationale and "CUDA context 512 MiB" in a.rationale
    # the same script measured keeps the tensors' rule: the 8x cap
    assert advise_one("batch_size", llama_plain(), ctx).details["batch_after"] == 8 * b
    # on 520 MiB the report says the step does not fit at all: no larger batch, and the advice says why
    small = AdviceContext(device_memory_bytes=520 * MiB)
    assert not memory_fit_for(dry, gpu_spec(dry, small)).fits
    c = advise_one("batch_size", dry, small)
    assert c.status == "already_applied" and "does not fit, 2.00 MiB over the 520 MiB on the GPU" in c.rationale
