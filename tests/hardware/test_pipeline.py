"""A pipeline's step (ccprof.hardware.pipeline): the schedule's bubble by hand numbers, and the
slowest rank's pipelined phases stretched by it while the optimizer step adds the slowest rank's."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from ccprof.artefacts.profile import OpCost, Pipeline, PipelineRank
from ccprof.hardware.pipeline import ZERO_BUBBLE_H1_FRAC, bubble_frac, describe_pipeline, pipeline_step


@pytest.mark.parametrize("schedule, p, m, v, expected", [
    ("ScheduleGPipe", 4, 8, 1, 3 / 11),                    # (p - 1) / (m + p - 1)
    ("Schedule1F1B", 4, 8, 1, 3 / 11),
    ("Schedule1F1B", 2, 4, 1, 1 / 5),
    ("Schedule1F1B", 1, 4, 1, 0.0),                        # one rank: no pipeline
    ("Schedule1F1B", 4, 8, 2, 3 / 11),                     # chunks only count for interleaved schedules
    ("ScheduleInterleaved1F1B", 4, 8, 2, 1.5 / 9.5),       # (p - 1) / v = 1.5 slots over m + 1.5
    ("ScheduleInterleavedZeroBubble", 4, 8, 2, 0.5 / 8.5),  # a third of 1.5 slots
    ("ScheduleZBVZeroBubble", 4, 8, 2, 0.0),
    ("SomeNewSchedule", 4, 8, 1, 3 / 11),                  # costed as 1F1B
])
def test_bubble_fraction_by_hand(schedule, p, m, v, expected):
    assert bubble_frac(schedule, p, m, v) == pytest.approx(expected)
    assert ZERO_BUBBLE_H1_FRAC == pytest.approx(1 / 3)


def _pipe(schedule="Schedule1F1B", microbatches=8, stage_rank=(0, 1, 2, 3)):
    ranks = sorted(set(stage_rank))
    return Pipeline(schedule=schedule, microbatches=microbatches, num_stages=len(stage_rank),
                    stage_rank=list(stage_rank),
                    ranks=[PipelineRank(rank=r, ops=[OpCost(op="aten.mm", count=r + 1)]) for r in ranks])


# each rank's phases, as the cost model would give them: rank 2 is the slowest (its forward and backward 12 ms)
PHASES = {0: {"data": 0.0, "forward": 0.003, "backward": 0.006, "optimizer": 0.001, "other": 0.0},
          1: {"data": 0.0, "forward": 0.003, "backward": 0.006, "optimizer": 0.002, "other": 0.001},
          2: {"data": 0.0, "forward": 0.004, "backward": 0.008, "optimizer": 0.001, "other": 0.0},
          3: {"data": 0.0, "forward": 0.003, "backward": 0.007, "optimizer": 0.001, "other": 0.0005}}


def _cost(ops, rank):
    return SimpleNamespace(phase_s=PHASES[rank])


def test_the_slowest_rank_sets_the_pace_and_the_bubble_stretches_its_pipelined_phases():
    run = pipeline_step(_pipe(), _cost)
    # 1F1B, p = 4, m = 8: bubble 3/11 of the pipelined time; rank 2's 12 ms become 12 x 11/8 = 16.5 ms
    assert run.slowest_rank == 2 and run.bubble_frac == pytest.approx(3 / 11)
    assert run.phase_s["forward"] == pytest.approx(0.004 * 11 / 8)
    assert run.phase_s["backward"] == pytest.approx(0.008 * 11 / 8)
    assert run.bubble_s == pytest.approx(0.012 * 3 / 8)
    # the optimizer runs after the flush on every rank: the slowest's, 2 ms (rank 1)
    assert run.phase_s["optimizer"] == pytest.approx(0.002)
    assert run.step_s == pytest.approx(0.0165 + 0.002)
    assert run.detail["bubble_step_frac"] == pytest.approx(0.0045 / 0.0185)
    # each rank's pipelined work (forward + backward + other) and optimizer; no peak recorded in these rows
    assert describe_pipeline(run.detail) == ("pipeline of 4 stages x 8 microbatches (1F1B): bubble 24% of the step; "
                                             "by rank, pipelined work / optimizer / peak memory: 0 9.00 ms / 1.00 ms "
                                             "/ —, 1 10.0 ms / 2.00 ms / —, 2 12.0 ms / 1.00 ms / —, 3 10.5 ms / "
                                             "1.00 ms / —")
    # a detail made before it had each rank's figures: the schedule and the bubble alone
    old = {k: v for k, v in run.detail.items() if k not in ("rank_phase_s", "rank_peak_bytes")}
    assert describe_pipeline(old) == "pipeline of 4 stages x 8 microbatches (1F1B): bubble 24% of the step"


def test_a_what_if_edits_the_base_ranks_rows_only():
    seen = {}

    def cost(ops, rank):
        seen[rank] = ops
        return SimpleNamespace(phase_s=PHASES[rank])
    edited = [OpCost(op="aten.addmm", count=7)]
    pipeline_step(_pipe(), cost, base_rank=1, base_ops=edited)
    assert seen[1] == edited and seen[0][0].count == 1 and seen[3][0].count == 4


def test_interleaved_stages_count_their_ranks_not_their_stages():
    # 8 stages looped over 4 ranks (v = 2): (p - 1) / v = 1.5 slots over m = 8
    run = pipeline_step(_pipe("ScheduleInterleaved1F1B", 8, (0, 1, 2, 3, 0, 1, 2, 3)), _cost)
    assert run.detail["chunks_per_rank"] == 2 and run.detail["ranks"] == 4
    assert run.bubble_frac == pytest.approx(1.5 / 9.5)
    assert describe_pipeline(run.detail).startswith("pipeline of 8 stages on 4 ranks x 8 microbatches (Interleaved1F1B)")


def test_the_projection_schedules_each_ranks_cost_model_step():
    from dataclasses import replace

    from ccprof.artefacts.profile import DryRun
    from ccprof.hardware.catalog import load_catalog
    from ccprof.hardware.inputs import step_inputs
    from ccprof.hardware.projection import compute_peak, project, step_cost_for
    from ccprof.hardware.translate import policy_for
    from tests.helpers.profiles import hand_ops, hand_profile
    light = hand_ops()
    heavy = [replace(o, count=2 * o.count, flops=2 * o.flops) for o in light]      # rank 1: twice the layers
    pipe = Pipeline(schedule="Schedule1F1B", microbatches=4, num_stages=2, stage_rank=[0, 1],
                    ranks=[PipelineRank(rank=0, ops=light, flops_per_step=10**12),
                           PipelineRank(rank=1, ops=heavy, flops_per_step=2 * 10**12)])
    profile = hand_profile(world_size=2, dry_run=DryRun(nproc=2, rank=0, pipeline=pipe))
    spec = load_catalog()["h100-sxm"]
    got = project(profile, {"h100-sxm": spec})["h100-sxm"]
    plain = {r: step_cost_for(profile, spec, ops=ops).phase_s for r, ops in ((0, light), (1, heavy))}
    work1 = sum(v for ph, v in plain[1].items() if ph not in ("data", "optimizer"))
    # p = 2, m = 4: rank 1's forward and backward x 5/4, the slower optimizer step after
    expected = work1 * 5 / 4 + max(plain[0]["optimizer"], plain[1]["optimizer"]) + plain[1]["data"]
    assert got.step_s == pytest.approx(expected)
    assert got.detail["pipeline"]["slowest_rank"] == 1 and got.detail["pipeline"]["bubble_frac"] == pytest.approx(0.2)
    # MFU per GPU: the ranks' mean FLOPs, 1.5e12 a step
    peak_flops, _ = compute_peak(profile, spec, policy_for(step_inputs(profile), spec))
    assert got.hfu == pytest.approx(1.5e12 / got.step_s / peak_flops)
    assert sum(got.phase_s.values()) == pytest.approx(got.step_s)


def _two_rank_profile(**rank1):
    """Rank 0 (the profile's own: 100M parameters, the hand profile's optimizer and host) and rank 1, whose
    stage holds a tenth of the parameters: its own optimizer, module calls and peak where ``rank1`` gives them."""
    from ccprof.artefacts.profile import DryRun, HostInfo
    from tests.helpers.profiles import hand_ops, hand_profile
    ops = hand_ops()
    pipe = Pipeline(schedule="Schedule1F1B", microbatches=4, num_stages=2, stage_rank=[0, 1],
                    ranks=[PipelineRank(rank=0, ops=ops, peak_bytes=2 * 10**9), PipelineRank(rank=1, ops=ops, **rank1)])
    return hand_profile(world_size=2, host=HostInfo(module_calls_per_step=40),
                        dry_run=DryRun(nproc=2, rank=0, pipeline=pipe))


def test_each_rank_is_costed_with_its_own_optimizer_host_counts_and_memory():
    from dataclasses import replace

    from ccprof.artefacts.profile import HostInfo, OptimizerInfo, OptimizerSection, Profile
    from ccprof.hardware.catalog import load_catalog
    from ccprof.hardware.inputs import step_inputs
    from ccprof.hardware.projection import pipelined_step, project, step_cost_for
    from ccprof.hardware.translate import policy_for
    small = OptimizerInfo(class_="AdamW", param_count=10_000_000, state_bytes=80 * 10**6)
    profile = _two_rank_profile(optimizers=[small], host=HostInfo(module_calls_per_step=400), peak_bytes=5 * 10**8)
    spec = load_catalog()["h100-sxm"]
    inputs = step_inputs(profile)
    # the fused kernel's bytes come from the optimizers' parameters: rank 1 updates a tenth of rank 0's
    fused = replace(policy_for(inputs, spec), optimizer="fused")
    run = pipelined_step(inputs, spec, fused)
    # rank 1 alone, as a profile of its own (its optimizer, module calls and peak at the top level)
    alone = replace(profile, optimizer=OptimizerSection([small]), host=HostInfo(module_calls_per_step=400),
                    dry_run=None)
    assert run.detail["rank_phase_s"]["1"] == pytest.approx(step_cost_for(alone, spec, fused).phase_s)
    assert run.detail["rank_phase_s"]["1"]["optimizer"] < run.detail["rank_phase_s"]["0"]["optimizer"]
    assert run.detail["rank_peak_bytes"] == {"0": 2 * 10**9, "1": 5 * 10**8}
    # the projection says each rank's figures; the facts survive the profile's JSON
    detail = project(profile, {"h100-sxm": spec})["h100-sxm"].detail["pipeline"]
    assert "by rank, pipelined work / optimizer / peak memory: 0 " in describe_pipeline(detail)
    assert describe_pipeline(detail).endswith(" / 477 MiB")           # rank 1's 5e8 bytes
    back = Profile.from_json(profile.to_json()).dry_run.pipeline.ranks[1]
    assert (back.optimizers, back.host.module_calls_per_step) == ([small], 400)


def test_a_rank_without_its_own_facts_is_costed_with_the_profiles_as_before():
    # a profile made before ranks kept their optimizers and host counts (no such keys in its JSON)
    import json

    from ccprof.artefacts.profile import Profile
    from ccprof.hardware.inputs import step_inputs
    data = json.loads(_two_rank_profile().to_json())
    for row in data["dry_run"]["pipeline"]["ranks"]:
        for key in ("optimizers", "host", "fusion"):
            del row[key]
    inputs = step_inputs(Profile.from_dict(data))
    rank1 = inputs.for_rank(1)
    assert (rank1.optimizers, rank1.host, rank1.model.fusion) == (inputs.optimizers, inputs.host, inputs.model.fusion)
    assert inputs.for_rank(0) is inputs and inputs.for_rank(7) is inputs     # its own rank; a rank it does not hold
