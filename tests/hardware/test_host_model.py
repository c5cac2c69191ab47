"""The host side of a projection: counts priced on the reference host, never the profiling
machine's clock. Recorded numbers only (no timing of this machine), so the tests say what the
model does with them: the same counts give the same seconds whatever the timings beside them."""
from __future__ import annotations

import dataclasses

import pytest

from ccprof.artefacts.profile import DataInfo, HostInfo, OpCost, Profile, Steps
from ccprof.hardware import load_catalog, project
from ccprof.hardware.catalog import GpuSpec
from ccprof.hardware.host import REFERENCE_HOST as REF
from ccprof.hardware.host import host_side
from ccprof.hardware.step import CUDA_LAUNCH_S, cost_step
from ccprof.hardware.translate import Policy

TOY = GpuSpec("toy", "Toy", memory_bytes=10 * 10**9, bandwidth_bytes_per_s=1e12,
              peak_flops={"fp32": 10e12, "bf16": 100e12}, sm_count=1)
# 100 tiny launches in the other phase (clipping, batch sampling): host-bound on any GPU
OTHER = OpCost("aten.mul.Tensor", "float32", 100, 0, 1200, 400, "other", shapes=[[1], [1]], out_shapes=[[1]])
FWD = OpCost("aten.add.Tensor", "float32", 10, 0, 1200, 400, "forward", shapes=[[1], [1]], out_shapes=[[1]])
# a profile as the harness writes it: the bytecodes each phase ran, counted in a warm-up step
COUNTED = HostInfo(dispatch_s=1.7e-6, module_call_s=1.5e-6, module_calls_per_step=3, clock="thread_cpu",
                   probe_s=REF.probe_s, opcodes={"forward": 2000, "other": 5000, "optimizer": 1000, "data": 900})


def test_each_phase_is_its_ops_and_its_bytecodes_on_the_reference_host():
    prof = Profile(ops=[FWD, OTHER], host=COUNTED)
    sc = cost_step(prof, TOY, Policy())
    # other: 100 ops x (reference dispatch + a CUDA launch) + 5000 bytecodes x the reference's cost
    assert sc.host_s["other"] == pytest.approx(100 * (REF.dispatch_s + CUDA_LAUNCH_S) + 5000 * REF.opcode_s)
    # forward: 10 ops + 2000 bytecodes; module calls are in the bytecodes (nn.Module.__call__ is Python)
    assert sc.host_s["forward"] == pytest.approx(10 * (REF.dispatch_s + CUDA_LAUNCH_S) + 2000 * REF.opcode_s)
    # the DataLoader's own Python is its batch time's, not a phase's
    assert sc.host_s["optimizer"] == pytest.approx(1000 * REF.opcode_s)


def test_the_profiling_machines_timings_do_not_move_a_projection():
    """Two runs of one script: the same counts, different timings (an idle and a busy machine)."""
    idle = Profile(ops=[FWD, OTHER], host=COUNTED, steps=Steps(step_s=[0.02] * 10, phase_s={"other": 0.002}))
    busy = dataclasses.replace(
        idle, host=dataclasses.replace(COUNTED, dispatch_s=3.8e-6, module_call_s=3.1e-6),
        steps=Steps(step_s=[0.04] * 10, phase_s={"other": 0.0039, "data": 0.01}))
    cat = load_catalog(user=False)
    a, b = project(idle, cat), project(busy, cat)
    for gid in cat:
        assert a[gid].step_s == b[gid].step_s, gid


def test_older_profiles_without_counts_price_module_calls():
    old = HostInfo(dispatch_s=9e-6, module_call_s=9e-6, module_calls_per_step=4)     # measured long ago: ignored
    sc = cost_step(Profile(ops=[FWD], host=old), TOY, Policy())
    assert sc.host_s["forward"] == pytest.approx(10 * (REF.dispatch_s + CUDA_LAUNCH_S) + 4 * REF.module_call_s)


def test_a_stated_host_speed_divides_the_host_side():
    fast = dataclasses.replace(COUNTED, target_speed=2.0)
    one = cost_step(Profile(ops=[OTHER], host=COUNTED), TOY, Policy())
    two = cost_step(Profile(ops=[OTHER], host=fast), TOY, Policy())
    # the CUDA launch is the driver's: it does not speed up with the CPU in this model
    assert two.host_s["other"] == pytest.approx(100 * (REF.dispatch_s / 2 + CUDA_LAUNCH_S) + 5000 * REF.opcode_s / 2)
    assert two.host_s["other"] < one.host_s["other"]
    assert "2x as fast as the reference" in host_side(Profile(host=fast)).how


def test_a_batch_time_is_stated_on_the_reference_host():
    # a batch took 2 ms of CPU on a host whose probe is 1.5x the reference's (a slower CPU):
    # 2 / 1.5 = 1.333 ms on the reference; with 1 worker and a 0-compute step, the wait is that
    host = dataclasses.replace(COUNTED, probe_s=REF.probe_s * 1.5)
    data = DataInfo(batch_s=0.002, batch_s_lo=0.002, batch_s_hi=0.0026, batch_clock="thread_cpu",
                    num_workers=0, batches_per_step=1.0)
    side = host_side(Profile(host=host, data=data))
    assert side.batch_s == pytest.approx(0.002 / 1.5)
    assert side.batch_s_hi == pytest.approx(0.0026 / 1.5)
    sc = cost_step(Profile(ops=[FWD], host=host, data=data), TOY, Policy())
    assert sc.phase_s["data"] == pytest.approx(0.002 / 1.5)
    # the band: the step at the ends of the batch time's interval
    assert sc.step_s_lo == pytest.approx(sc.step_s)
    assert sc.step_s_hi == pytest.approx(sc.step_s + (0.0026 - 0.002) / 1.5)


def test_a_wait_the_profiling_host_saw_is_not_projected_without_a_batch_time():
    prof = Profile(ops=[FWD], host=COUNTED, data=DataInfo(num_workers=2, batches_per_step=1.0),
                   steps=Steps(step_s=[0.1], phase_s={"data": 0.05}))
    sc = cost_step(prof, TOY, Policy())
    assert sc.phase_s["data"] == 0.0
    assert "its CPU's" in sc.data["method"]


def test_a_wildly_slow_probe_is_bounded():
    # a probe 10x the reference's says the machine was too busy to measure, not a 10x slower CPU
    host = dataclasses.replace(COUNTED, probe_s=REF.probe_s * 10)
    data = DataInfo(batch_s=0.003, batch_clock="thread_cpu", num_workers=0, batches_per_step=1.0)
    assert host_side(Profile(host=host, data=data)).batch_s == pytest.approx(0.003 / 3)
