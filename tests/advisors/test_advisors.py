"""The advisor registry, the one ranking, advice.json, the combined plan, and invariants
that hold for every advisor on every profile."""
from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from ccprof.advisors import ADVISORS, AdviceContext, advise, rank, register
from ccprof.advisors.plan import build_plan
from ccprof.artefacts.advice import CONFIDENCES, RISKS, STATUSES, Advice, AdviceSet, Projected
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import TWEAKS
from tests.helpers.paths import FIXTURES
from tests.helpers.profiles import (
    as_dry_run,
    cnn_plain,
    gpt_loader_plain,
    gpt_plain,
    hand_profile,
    llama_plain,
    priced,
)


def test_registry_holds_the_18_ids_and_refuses_duplicates():
    assert set(ADVISORS) == set(TWEAKS) and len(ADVISORS) == 18
    with pytest.raises(RuntimeError):
        register("lora")(lambda p, c: None)
    with pytest.raises(KeyError):
        register("not_a_tweak")


def test_rank_is_by_expected_share_then_dollars_then_status():
    a = [Advice("x", "recommended", projected=Projected(usd_saved=1.0, expected_frac=0.1)),
         Advice("y", "recommended", projected=Projected(usd_saved=5.0, expected_frac=0.5)),
         Advice("z", "already_applied"), Advice("w", "recommended", projected=Projected(usd_saved=-1.0, expected_frac=-0.1))]
    assert [x.tweak for x in rank(a)] == ["y", "x", "w", "z"]
    # equal shares, different dollars (a share can round to the same figure): within 1%, a tie
    # broken by risk, then confidence, then the id
    c = [Advice("c1", "recommended", risk="accuracy", projected=Projected(usd_saved=5.0, expected_frac=0.2)),
         Advice("c2", "recommended", risk="none", projected=Projected(usd_saved=1.0, expected_frac=0.2))]
    assert [x.tweak for x in rank(c)] == ["c2", "c1"]
    # a 30% saving at low confidence (x0.35 = 10.5%) ranks below 20% at medium (x0.7 = 14%)
    b = [Advice("low", "recommended", projected=Projected(cost_saved_frac=0.3, expected_frac=0.105, usd_saved=30)),
         Advice("med", "recommended", projected=Projected(cost_saved_frac=0.2, expected_frac=0.14, usd_saved=20))]
    assert [x.tweak for x in rank(b)] == ["med", "low"]


def test_make_advice_fills_the_share_and_the_weight():
    from ccprof.advisors._common import make_advice
    from ccprof.advisors.constants import CONFIDENCE_WEIGHT

    p = priced(llama_plain())
    a = make_advice("compile", "recommended", p, AdviceContext(), rationale="r", snippet="s",
                    confidence="low", time_saved_frac=0.2)
    assert a.projected.cost_saved_frac == pytest.approx(0.2)
    assert a.projected.expected_frac == pytest.approx(0.2 * CONFIDENCE_WEIGHT["low"])
    assert a.details["confidence_weight"] == CONFIDENCE_WEIGHT["low"]
    # an explicit dollar saving sets the share from the run's dollars
    usd_run = p.cost.usd_run
    a = make_advice("right_size_gpu", "recommended", p, AdviceContext(), rationale="r", snippet="s",
                    usd_saved=usd_run / 4)
    assert a.projected.cost_saved_frac == pytest.approx(0.25, rel=1e-3)
    # not recommended: nothing expected
    a = make_advice("compile", "not_applicable", p, AdviceContext(), rationale="r", snippet="s")
    assert a.projected.cost_saved_frac == 0 and a.projected.expected_frac == 0


def test_advice_json_schema_and_round_trip(tmp_path):
    s = advise(priced(llama_plain()))
    path = tmp_path / "advice.json"
    s.to_json(path)
    data = json.loads(path.read_text())
    assert data["schema"] == "ccprof.advice/1" and set(data) == {"schema", "advice", "plan", "verification", "configurations"}
    assert data["verification"] is None                      # no --verify ran
    assert [a["tweak"] for a in data["advice"]] == [a.tweak for a in s.advice]
    assert AdviceSet.from_json(path) == s
    expected = [a.projected.expected_frac for a in s.advice if a.status == "recommended"]
    assert expected == sorted(expected, reverse=True)


def test_plan_compounds_and_knows_conflicts():
    p = hand_profile()
    mk = lambda t, frac, scope="step", mem=0: Advice(t, "recommended", projected=Projected(
        time_saved_frac=frac, memory_saved_bytes=mem, usd_saved=10 * frac, expected_frac=frac),
        details={"time_scope": scope})
    advice = rank([mk("mixed_precision", 0.4), mk("data_curation", 0.1, "run"), mk("lora", 0.3),
                   mk("warm_start", 0.05, "run", 5)])
    plan = build_plan(p, AdviceContext(), advice)
    # $10 x (1 - 0.4) x (1 - 0.3) x (1 - 0.1) = $3.78; step 1 s x 0.6 x 0.7 = 0.42 s
    assert plan.tweaks == ["mixed_precision", "lora", "data_curation"]
    assert plan.usd_run_before == pytest.approx(10.0) and plan.usd_run_after == pytest.approx(3.78)
    assert plan.step_s_after == pytest.approx(0.42)
    assert any(c.startswith("warm_start vs lora") for c in plan.conflicts)


def test_plan_uses_checkpointing_when_the_peak_does_not_fit():
    s = advise(llama_plain(), AdviceContext(device_memory_bytes=int(llama_plain().memory.peak_bytes / 0.9 * 0.8)))
    ck = s.by_tweak()["checkpointing"]
    assert ck.status == "recommended" and ck.projected.usd_saved <= 0
    assert "checkpointing" in s.plan.tweaks or "mixed_precision" in s.plan.tweaks
    assert s.plan.peak_bytes_after < s.plan.peak_bytes_before


PROFILES = {
    "llama": lambda: llama_plain(),
    "llama_priced": lambda: priced(llama_plain()),
    "gpt": lambda: priced(gpt_plain(), gpu="l4"),
    "cnn": lambda: cnn_plain(),
    "loader": lambda: priced(gpt_loader_plain(), gpu="h100-sxm"),
    "sample": lambda: Profile.from_json(FIXTURES / "profile_sample.json"),
    "sparse": lambda: Profile.from_json(FIXTURES / "profile_sparse.json"),
    "hf_trainer": lambda: Profile.from_json(FIXTURES / "real_hf_trainer" / "profile.json"),
}


def test_the_plan_fits_a_dry_run_by_the_reports_rule():
    """The tiny Llama as a dry run on a 520 MiB GPU: its 8.6 MB tensors' peak is under 90%, but the reserved
    10 MiB + the 512 MiB CUDA context are over (the report's verdict). The plan takes a tweak as needed to
    fit, and its peak fits by memory_fit_for only from that step on."""
    from ccprof.advisors._common import gpu_spec
    from ccprof.hardware.projection import memory_fit_for
    dry = priced(as_dry_run(llama_plain()))
    ctx = AdviceContext(device_memory_bytes=520 << 20)
    spec = gpu_spec(dry, ctx)
    assert dry.memory.peak_bytes < 0.9 * spec.memory_bytes and not memory_fit_for(dry, spec).fits
    steps = advise(dry, ctx).plan.steps
    first = next(i for i, st in enumerate(steps) if st.note == "needed to fit")
    assert [memory_fit_for(dry, spec, st.peak_bytes).fits for st in steps] == [i >= first for i in range(len(steps))]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_advisor_answers_and_explains(name):
    s = advise(PROFILES[name]())
    assert sorted(a.tweak for a in s.advice) == sorted(TWEAKS)
    for a in s.advice:
        assert a.status in STATUSES and a.risk in RISKS and a.confidence in CONFIDENCES, a
        assert a.rationale and a.snippet.strip() and a.title, a.tweak
        if a.status != "recommended":
            # nothing claimed for what is done already or does not apply
            assert (a.projected.time_saved_frac, a.projected.memory_saved_bytes, a.projected.usd_saved) == (0, 0, 0), a
        else:
            # a saving comes with numbers from the profile, its assumptions and sources
            assert re.search(r"\d", a.rationale), a.tweak
            if a.projected.time_saved_frac or a.projected.memory_saved_bytes or a.projected.usd_saved:
                assert a.assumptions and a.sources, a.tweak
            if a.projected.usd_saved:
                assert "$" in a.rationale, a.tweak
    assert s.plan.usd_run_after <= s.plan.usd_run_before + 1e-9


def test_a_run_that_measured_nothing_gets_18_plain_answers():
    s = advise(Profile())
    assert len(s.advice) == 18 and all(a.status == "not_applicable" for a in s.advice)
    assert all("measured no training step" in a.rationale for a in s.advice)


def test_no_price_means_no_dollars_and_says_so():
    s = advise(llama_plain())
    assert all(a.projected.usd_saved == 0 for a in s.advice)
    rec = [a for a in s.advice if a.status == "recommended"]
    assert rec and all("no price was attached" in a.rationale for a in rec)


def test_already_applied_profile_gets_no_recommendation_for_it():
    p = llama_plain()
    p = replace(p, precision=replace(p.precision, autocast=True, autocast_dtype="bfloat16",
                                     float32_matmul_precision="high"),
                model=replace(p.model, gradient_checkpointing=True),
                static=replace(p.static, compile=True, early_stopping=True, peft=True, ddp=True))
    by = advise(p).by_tweak()
    for t in ("mixed_precision", "tf32", "checkpointing", "compile", "early_stopping", "lora", "distributed", "finetune"):
        assert by[t].status == "already_applied", t


def test_cli_advise_rewrites_advice_json(tmp_path):
    import shutil

    from click.testing import CliRunner

    from ccprof.cli import cli

    prof = tmp_path / "profile.json"
    shutil.copy(FIXTURES / "profile_sample.json", prof)
    r = CliRunner().invoke(cli, ["advise", str(prof), "--total-steps", "5000", "--lora-rank", "16"])
    assert r.exit_code == 0, r.output
    s = AdviceSet.from_json(tmp_path / "advice.json")
    assert len(s.advice) == 18 and s.by_tweak()["lora"].details["rank"] == 16
    assert "plan:" in r.output


def test_plan_with_unused_gpus_never_goes_below_zero():
    from ccprof.artefacts.profile import Device
    p = hand_profile(device=Device(type="cuda", name="A100", count=8, capability="8.0", memory_bytes=80 * 10**9))
    s = advise(p)
    assert "distributed" in s.plan.tweaks
    d = s.by_tweak()["distributed"].projected.time_saved_frac
    step = next(x for x in s.plan.steps if x.tweak == "distributed")
    before = s.plan.steps[s.plan.tweaks.index("distributed") - 1].usd_run if s.plan.tweaks.index("distributed") else 10.0
    assert step.usd_run == pytest.approx(before * (1 - d)) and s.plan.usd_run_after > 0


def test_plan_leaves_out_accuracy_risks_at_low_confidence():
    p = hand_profile()
    mk = lambda t, frac, risk, conf: Advice(t, "recommended", risk=risk, confidence=conf, projected=Projected(
        time_saved_frac=frac, usd_saved=10 * frac, expected_frac=frac), details={"time_scope": "step"})
    advice = rank([mk("pruning", 0.3, "accuracy", "low"), mk("lora", 0.2, "accuracy", "medium"),
                   mk("mixed_precision", 0.4, "numerics", "medium")])
    plan = build_plan(p, AdviceContext(), advice)
    # $10 x (1 - 0.4) x (1 - 0.2) = $4.80: pruning is offered, not planned
    assert plan.tweaks == ["mixed_precision", "lora"]
    assert plan.usd_run_after == pytest.approx(4.8)
    assert any(c.startswith("pruning left out of the plan") for c in plan.conflicts)


def test_plan_memory_follows_each_tweaks_own_saving():
    p = hand_profile()                                   # activations 300 MB, peak 2000 MB
    MB = 10**6
    mp = Advice("mixed_precision", "recommended", risk="numerics", confidence="medium",
                projected=Projected(time_saved_frac=0.4, usd_saved=4, memory_saved_bytes=200 * MB, expected_frac=0.28),
                details={"time_scope": "step", "activations_after_bytes": 150 * MB})
    ck = Advice("checkpointing", "recommended", projected=Projected(time_saved_frac=0.01, usd_saved=0.1,
                                                                    memory_saved_bytes=240 * MB, expected_frac=0.007),
                details={"time_scope": "step", "activations_after_bytes": 60 * MB})
    plan = build_plan(p, AdviceContext(device_memory_bytes=10**12), rank([mp, ck]))
    # mixed precision: 2000 - 200 = 1800 MB, activations 300 -> 150 MB;
    # checkpointing then saves 240 MB x (150 / 300) = 120 MB: 1680 MB
    assert [s.tweak for s in plan.steps][:2] == ["mixed_precision", "checkpointing"]
    assert plan.steps[0].peak_bytes == 1800 * MB
    assert plan.steps[1].peak_bytes == 1680 * MB
