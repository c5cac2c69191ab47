"""The plan across configurations (ccprof.advisors.configurations): each GPU x count x memory
tweak's memory per GPU, step, hours and dollars, and the three picks."""
from __future__ import annotations

import pytest

from ccprof.advisors import AdviceContext, advise
from ccprof.advisors.configurations import GPU_COUNTS, plan_configurations
from ccprof.artefacts.profile import Memory
from ccprof.hardware import attach, load_catalog
from ccprof.hardware.comm import ddp_comm, fsdp_comm
from ccprof.hardware.projection import usable_memory_bytes
from tests.helpers.profiles import hand_profile

GB = 10**9


def _costed(**kw):
    return attach(hand_profile(**kw), gpu="a100-80gb", total_steps=10_000)


def _row(plan, gpu, n, tweak="as written"):
    (row,) = [r for r in plan.rows if r.gpu == gpu and r.gpus == n and r.tweak == tweak]
    return row


def test_one_gpu_rows_are_the_projection_and_ddp_adds_its_buckets_and_exposed_all_reduce():
    p = _costed()
    plan = plan_configurations(p, AdviceContext())
    cat = load_catalog()
    priced = {g for g, s in cat.items() if s.usd_per_hour and g in p.projection}
    assert {r.gpu for r in plan.rows} == priced
    assert {r.gpus for r in plan.rows} == set(GPU_COUNTS)
    one = _row(plan, "a100-80gb", 1)
    proj = p.projection["a100-80gb"]
    assert one.step_s == pytest.approx(proj.step_s) and one.memory_per_gpu_bytes == p.memory.peak_bytes
    assert one.run_hours == pytest.approx(10_000 * proj.step_s / 3600)
    assert one.usd_run == pytest.approx(one.run_hours * cat["a100-80gb"].usd_per_hour)
    four = _row(plan, "a100-80gb", 4)
    comm = ddp_comm(p.memory.grads_bytes, 4, cat["a100-80gb"], proj.phase_s["backward"])
    assert four.parallel == "ddp" and four.memory_per_gpu_bytes == p.memory.peak_bytes + p.memory.grads_bytes
    assert four.step_s == pytest.approx(proj.step_s + comm.exposed_s)
    # the same samples: a quarter of the steps, four GPUs' price
    assert four.run_hours == pytest.approx(10_000 / 4 * four.step_s / 3600)
    assert four.usd_run == pytest.approx(four.run_hours * 4 * cat["a100-80gb"].usd_per_hour)


def test_state_too_big_for_ddp_is_sharded_and_the_picks_follow_budget_and_deadline():
    big = Memory(peak_bytes=130 * GB, params_bytes=30 * GB, grads_bytes=30 * GB, optimizer_state_bytes=60 * GB,
                 activations_bytes=8 * GB, other_bytes=2 * GB)
    p = _costed(memory=big)
    cat = load_catalog()
    plan = plan_configurations(p, AdviceContext(), budget_usd=1e9, deadline_h=1e9)
    h100 = cat["h100-sxm"]
    assert not _row(plan, "h100-sxm", 1).fits
    eight = _row(plan, "h100-sxm", 8)
    assert eight.parallel == "fsdp" and eight.fits
    assert eight.memory_per_gpu_bytes == 120 * GB // 8 + 10 * GB      # state / 8 + the rest (no repeated block)
    proj = p.projection["h100-sxm"]
    comm = fsdp_comm(30 * GB, 30 * GB, 8, h100, proj.phase_s["forward"] + proj.phase_s["backward"])
    assert eight.step_s == pytest.approx(proj.step_s + comm.exposed_s)
    fits = [r for r in plan.rows if r.fits and r.risk in ("none", "numerics")]
    assert all(r.memory_per_gpu_bytes <= usable_memory_bytes(cat[r.gpu]) for r in fits)
    assert plan.rows[plan.cheapest] == min(fits, key=lambda r: (r.usd_run, r.step_s / r.gpus))
    assert plan.rows[plan.fastest_in_budget].run_hours == min(r.run_hours for r in fits)
    # a budget and a deadline that only some rows meet
    mid_usd = sorted(r.usd_run for r in fits)[len(fits) // 2]
    mid_h = sorted(r.run_hours for r in fits)[len(fits) // 2]
    plan = plan_configurations(p, AdviceContext(), budget_usd=mid_usd, deadline_h=mid_h)
    fast = plan.rows[plan.fastest_in_budget]
    assert fast.usd_run <= mid_usd and fast.run_hours == min(r.run_hours for r in fits if r.usd_run <= mid_usd)
    cheap = plan.rows[plan.cheapest_by_deadline]
    assert cheap.run_hours <= mid_h and cheap.usd_run == min(r.usd_run for r in fits if r.run_hours <= mid_h)
    none = plan_configurations(p, AdviceContext(), budget_usd=1e-9, deadline_h=1e-9)
    assert none.fastest_in_budget is None and none.cheapest_by_deadline is None


def test_without_a_run_size_rows_compare_per_1k_samples():
    p = attach(hand_profile(cost=None), gpu="a100-80gb")
    plan = plan_configurations(p, AdviceContext())
    assert plan.run_steps == 0 and all(r.run_hours is None and r.usd_run is None for r in plan.rows)
    one = _row(plan, "a100-80gb", 1)
    assert one.usd_per_1k_samples == pytest.approx(1000 * one.step_s * one.usd_per_hour / 3600 / 8)
    assert plan.cheapest is not None


def test_advise_adds_the_plan_only_when_asked():
    p = _costed()
    assert advise(p).configurations is None
    withplan = advise(p, AdviceContext(configurations=True, budget_usd=5.0))
    assert withplan.configurations is not None and withplan.configurations.budget_usd == 5.0


def test_the_report_shows_the_picks_the_table_and_the_chart():
    from ccprof.reports.html import render_html
    p = _costed()
    advice = advise(p, AdviceContext(configurations=True, deadline_h=100.0))
    html = render_html(p, advice)
    assert 'id="configurations"' in html and "Cheapest that fits:" in html and "Cheapest within 4.17 d: " in html
    assert 'id="chart-configs"' in html


BIG = Memory(peak_bytes=130 * GB, params_bytes=30 * GB, grads_bytes=30 * GB, optimizer_state_bytes=60 * GB,
             activations_bytes=8 * GB, other_bytes=2 * GB)


def test_a_step_one_node_cannot_hold_is_sharded_over_whole_nodes_of_the_catalog_network():
    p = _costed(memory=BIG)
    cat = load_catalog()
    plan = plan_configurations(p, AdviceContext())
    l4 = cat["l4"]
    assert not _row(plan, "l4", 8).fits
    (two,) = [r for r in plan.rows if r.gpu == "l4" and r.nodes == 2 and r.tweak == "as written"]
    assert two.gpus == 16 and two.parallel == "fsdp" and two.fits
    assert two.memory_per_gpu_bytes == 120 * GB // 16 + 10 * GB                 # state / 16 + the rest
    proj = p.projection["l4"]
    comm = fsdp_comm(30 * GB, 30 * GB, 16, l4, proj.phase_s["forward"] + proj.phase_s["backward"], nodes=2)
    assert two.step_s == pytest.approx(proj.step_s + comm.exposed_s) and "over 2 nodes" in two.how
    assert two.usd_per_hour == 16 * l4.usd_per_hour
    assert two.usd_run == pytest.approx(10_000 / 16 * two.step_s / 3600 * 16 * l4.usd_per_hour)
    # 2 nodes fit: no more nodes without a budget or deadline; nor any for a GPU one node holds
    assert not any(r.gpu == "l4" and r.nodes > 2 for r in plan.rows)
    assert not any(r.gpu == "h100-sxm" and r.nodes > 1 for r in plan.rows)
    # GPUs without a network figure stay on one node, and the plan says so
    assert not any(r.nodes > 1 for r in plan.rows if r.gpu in ("h100-pcie", "rtx-4090"))
    assert any("No network figure in the catalog for h100-pcie, rtx-4090" in a for a in plan.assumptions)
    assert any(l4.network_source in s for s in plan.sources)
    # the report names the nodes
    from ccprof.artefacts.advice import AdviceSet
    from ccprof.reports._view_configs import configs_view
    view = configs_view(AdviceSet(configurations=plan))
    assert any(line.name == "2 nodes x 8 x l4 FSDP" for line in view.lines)
    assert "span several nodes" in view.note


def test_budget_and_deadline_picks_consider_more_nodes():
    p = _costed()
    plan = plan_configurations(p, AdviceContext(), budget_usd=1e9)
    h100 = [r for r in plan.rows if r.gpu == "h100-sxm" and r.tweak == "as written"]
    assert [(r.gpus, r.nodes) for r in h100] == [(1, 1), (2, 1), (4, 1), (8, 1), (16, 2), (32, 4), (64, 8), (128, 16)]
    # more nodes: a shorter run, never a cheaper one (the same samples, more collectives)
    assert all(a.run_hours > b.run_hours and a.usd_run <= b.usd_run for a, b in zip(h100[3:], h100[4:]))
    fits = [r for r in plan.rows if r.fits and r.risk in ("none", "numerics")]
    fastest = plan.rows[plan.fastest_in_budget]
    assert fastest.run_hours == min(r.run_hours for r in fits) and fastest.nodes > 1
    # the table keeps one node's rows and, of the many rows over several nodes, the pick
    from ccprof.artefacts.advice import AdviceSet
    from ccprof.reports._view_configs import configs_view
    view = configs_view(AdviceSet(configurations=plan))
    assert [line.gpus for line in view.lines if line.gpus > 8] == [fastest.gpus]
    assert sum(r.nodes == 1 and r.fits for r in plan.rows) == len(view.lines) - 1 and "has them all" in view.note
    # a deadline no single node meets is met by the cheapest multi-node row
    one_node = min(r.run_hours for r in fits if r.nodes == 1)
    plan = plan_configurations(p, AdviceContext(), deadline_h=0.9 * one_node)
    pick = plan.rows[plan.cheapest_by_deadline]
    met = [r for r in plan.rows if r.fits and r.risk in ("none", "numerics") and r.run_hours <= 0.9 * one_node]
    assert pick.nodes > 1 and pick.usd_run == min(r.usd_run for r in met)


def test_a_profile_traced_on_many_ranks_is_planned_in_its_own_world_without_adding_collectives_twice():
    from ccprof.artefacts.profile import OpCost
    from tests.helpers.profiles import hand_ops
    scatter = OpCost("c10d._reduce_scatter_base_", "float32", 10, 0, 0, 0, "backward", shapes=[[1000], [16000]],
                     out_shapes=[[1000]], attrs={"bytes": 64_000_000, "group": 16, "nodes": 2})
    p = _costed(world_size=16, ops=hand_ops() + [scatter])
    plan = plan_configurations(p, AdviceContext())
    assert plan.rows and {(r.gpus, r.nodes, r.parallel) for r in plan.rows} == {(16, 2, "fsdp")}
    row = _row(plan, "a100-80gb", 16)
    proj = p.projection["a100-80gb"]
    # the rank's own step (its collectives already in it) and memory; every rank takes every step
    assert row.step_s == pytest.approx(proj.step_s) and row.memory_per_gpu_bytes == p.memory.peak_bytes
    assert row.run_hours == pytest.approx(10_000 * proj.step_s / 3600)
    assert row.usd_run == pytest.approx(row.run_hours * 16 * load_catalog()["a100-80gb"].usd_per_hour)
    assert "16 ranks on 2 node(s)" in plan.assumptions[0]


def test_a_dry_run_world_fits_by_its_reserved_peak_nccl_buffers_and_context():
    from dataclasses import replace

    from ccprof.artefacts.profile import DryRun, OpCost
    from ccprof.hardware.projection import CUDA_CONTEXT_BYTES, nccl_buffer_bytes
    from tests.helpers.profiles import hand_ops
    scatter = OpCost("c10d._reduce_scatter_base_", "float32", 10, 0, 0, 0, "backward", shapes=[[1000], [16000]],
                     out_shapes=[[1000]], attrs={"bytes": 64_000_000, "group": 16, "nodes": 2})
    base = hand_profile(world_size=16, ops=hand_ops() + [scatter])
    reserved = base.memory.peak_bytes + 3 * GB             # the allocator's segments over the tensors
    dry = replace(base, dry_run=DryRun(nproc=8, nnodes=2),
                  memory=replace(base.memory, reserved_peak_bytes=reserved))
    plan = plan_configurations(attach(dry, gpu="a100-80gb", total_steps=10_000), AdviceContext())
    row = _row(plan, "a100-80gb", 16)
    # one communicator (16 ranks over 2 nodes): 960 MiB of NCCL buffers; the context 512 MiB
    assert row.memory_parts == {"reserved": reserved, "nccl": nccl_buffer_bytes(16), "cuda_context": CUDA_CONTEXT_BYTES}
    assert row.memory_per_gpu_bytes == sum(row.memory_parts.values())
    assert row.usable_bytes == 80 * GB and row.fits == (row.memory_per_gpu_bytes <= 80 * GB)
    assert any("NCCL's buffers" in a for a in plan.assumptions)
    # the same world as a measured run keeps the tensors' rule
    measured = plan_configurations(attach(replace(dry, dry_run=None), gpu="a100-80gb", total_steps=10_000),
                                   AdviceContext())
    assert _row(measured, "a100-80gb", 16).memory_parts == {"tensors": base.memory.peak_bytes}


def test_a_traced_pipelines_ranks_share_each_sample():
    """Four ranks of one pipeline each see every sample of the step: per GPU a step moves a quarter
    of the batch, and the four GPUs together one batch a step (not four)."""
    from ccprof.artefacts.profile import DryRun, Pipeline, PipelineRank
    from tests.helpers.profiles import hand_ops
    ops = hand_ops()
    pipe = Pipeline(schedule="Schedule1F1B", microbatches=8, num_stages=4, stage_rank=[0, 1, 2, 3],
                    ranks=[PipelineRank(rank=r, ops=ops) for r in range(4)])
    profile = attach(hand_profile(world_size=4, dry_run=DryRun(nproc=4, rank=0, pipeline=pipe)), gpu="a100-80gb",
                     total_steps=10_000)
    plan = plan_configurations(profile, AdviceContext())
    row = _row(plan, "a100-80gb", 4)
    assert row.parallel == "pipeline"
    samples, tokens = profile.steps.samples_per_step, profile.steps.tokens_per_step
    assert row.samples_per_s == pytest.approx(samples / row.step_s)
    if tokens:
        assert row.tokens_per_s_per_gpu == pytest.approx(tokens / 4 / row.step_s)
    cat = load_catalog()
    assert row.usd_per_1k_samples == pytest.approx(1000 * row.step_s * cat["a100-80gb"].usd_per_hour / 3600
                                                   / (samples / 4))
