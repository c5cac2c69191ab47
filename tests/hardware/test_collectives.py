"""Collectives in the cost model: a c10d op row is costed over the links (ccprof.hardware.comm),
not as a memory-bound kernel; in forward and backward the compute hides what it can (DDP's
buckets, FSDP's prefetch), the longest collective never; elsewhere it blocks, and a pipeline's sends
and receives block everywhere. The per-op seconds still sum to the step's device time."""
from __future__ import annotations

from dataclasses import replace

import pytest

from ccprof.artefacts.profile import OpCost
from ccprof.hardware import kernels as K
from ccprof.hardware.catalog import load_catalog
from ccprof.hardware.comm import collective_s
from ccprof.hardware.step import cost_step, exposed_comm_s, op_s
from tests.helpers.profiles import hand_profile

CAT = load_catalog()


def _allreduce(nbytes: int, count: int, phase: str = "backward", group: int = 8, nodes: int = 1) -> OpCost:
    n = nbytes // 4
    return OpCost("c10d.allreduce_", "float32", count, 0, nbytes * count, nbytes * count, phase, shapes=[[n]],
                  out_shapes=[[n]], attrs={"bytes": nbytes, "group": group, "nodes": nodes})


def test_collective_ops_are_their_own_class_and_a_wait_launches_nothing():
    assert K.op_class("c10d.allreduce_") == "collective"
    assert K.op_class("c10d._allgather_base_") == "collective"
    assert K.op_class("_c10d_functional.all_gather_into_tensor") == "collective"
    assert K.op_class("_c10d_functional.wait_tensor") == "view"


def test_a_collective_costs_its_link_time_from_its_attrs():
    spec = CAT["h100-sxm"]
    row = _allreduce(100 * 2**20, 1)
    k = K.kernel_s(row.op, row.shapes, "float32", spec, K.load_params(), attrs=row.attrs)
    assert k == pytest.approx(collective_s("all_reduce", 100 * 2**20, 8, spec))
    assert k > 3 * K.stream_s(2 * 100 * 2**20, "elementwise", spec, K.load_params())    # links, not HBM


def test_backward_hides_what_its_compute_covers_but_never_the_longest_collective():
    spec = CAT["a100-80gb"]
    base = hand_profile()
    bare = cost_step(base, spec)
    small = cost_step(replace(base, ops=base.ops + [_allreduce(2**20, 4)]), spec)
    longest = collective_s("all_reduce", 2**20, 8, spec)
    assert small.comm_s["backward"] == pytest.approx(4 * longest)
    # four small buckets under a long backward: only the last one shows
    assert small.comm_exposed_s["backward"] == pytest.approx(longest)
    assert small.device_s["backward"] == pytest.approx(bare.device_s["backward"] + longest)
    big = cost_step(replace(base, ops=base.ops + [_allreduce(2**30, 8)]), spec)
    over = big.comm_s["backward"] - bare.device_s["backward"]
    assert over > 0 and big.comm_exposed_s["backward"] == pytest.approx(over)
    # an all-reduce in the optimizer (a gradient-norm clip's) blocks
    opt = cost_step(replace(base, ops=base.ops + [_allreduce(2**20, 1, phase="optimizer")]), spec)
    assert opt.comm_exposed_s["optimizer"] == pytest.approx(opt.comm_s["optimizer"])


def _p2p(op: str, nbytes: int, count: int, phase: str) -> OpCost:
    """A pipeline's send or receive as a stage's dry run records it: group 2, its bytes in attrs."""
    n = nbytes // 4
    return OpCost(op, "float32", count, 0, nbytes * count, nbytes * count, phase, shapes=[[n]],
                  attrs={"bytes": nbytes, "group": 2, "nodes": 1})


def test_a_pipelines_sends_and_receives_are_never_hidden_in_forward_or_backward():
    # the schedule waits on each batch of them before the compute that follows (step.blocks): a receive in
    # backward costs all its seconds, where an all-reduce of the same bytes hides behind the backward's compute
    spec = CAT["a100-80gb"]
    base = hand_profile()
    bare = cost_step(base, spec)
    one = collective_s("recv", 2**20, 2, spec)
    for phase in ("forward", "backward"):
        rows = [_p2p("c10d.recv_", 2**20, 4, phase), _p2p("c10d.send", 2**20, 4, phase)]
        p2p = cost_step(replace(base, ops=base.ops + rows), spec)
        assert p2p.comm_s[phase] == pytest.approx(8 * one)
        assert p2p.comm_exposed_s[phase] == pytest.approx(8 * one)
        assert p2p.device_s[phase] == pytest.approx(bare.device_s[phase] + 8 * one)
    hidden = cost_step(replace(base, ops=base.ops + [_allreduce(2**20, 4)]), spec)
    assert hidden.comm_exposed_s["backward"] < hidden.comm_s["backward"]


def test_per_op_seconds_still_sum_to_the_step_with_collectives():
    spec = CAT["h100-sxm"]
    base = hand_profile()
    for extra in ([_allreduce(2**20, 4)], [_allreduce(2**30, 8)], [_allreduce(2**20, 1, phase="optimizer")],
                  [_allreduce(2**20, 4), _p2p("c10d.send", 2**20, 4, "backward")]):
        p = replace(base, ops=base.ops + extra)
        assert sum(op_s(p, spec)) == pytest.approx(sum(cost_step(p, spec).device_s.values()), rel=1e-9)


def test_exposed_comm_rule():
    assert exposed_comm_s("backward", 0.0, 0.0, 1.0) == 0.0
    assert exposed_comm_s("backward", 0.5, 0.1, 1.0) == pytest.approx(0.1)
    assert exposed_comm_s("backward", 1.5, 0.1, 1.0) == pytest.approx(0.5)
    assert exposed_comm_s("forward", 0.2, 0.2, 0.0) == pytest.approx(0.2)
    assert exposed_comm_s("optimizer", 0.3, 0.1, 5.0) == pytest.approx(0.3)

