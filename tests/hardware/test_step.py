"""The step model: device vs host time by phase, the data wait, compile's fusion, data-parallel
collectives and the projection onto every GPU, on hand-built profiles with round numbers."""
from __future__ import annotations

import dataclasses

import pytest

from ccprof.artefacts.profile import DataInfo, Device, Flops, HostInfo, Memory, OpCost, Precision, Profile, Steps
from ccprof.hardware import kernels as K
from ccprof.hardware import load_catalog, project
from ccprof.hardware.catalog import GpuSpec
from ccprof.hardware.comm import DDP_BUCKET_BYTES, HOP_LATENCY_S, NCCL_BUS_EFF, ddp_comm, fsdp_comm, ring_allreduce_s
from ccprof.hardware.host import REFERENCE_HOST as REF
from ccprof.hardware.projection import CALIBRATION_BOUNDS, MEMORY_HEADROOM_FRAC, fits_memory, mfu, usable_memory_bytes
from ccprof.hardware.step import CUDA_LAUNCH_S, PCIE_BYTES_PER_S, cost_step, data_wait_s, module_s, op_s
from ccprof.hardware.translate import Policy, policy_for, translate

# 10 GB, 1 TB/s, 10 TFLOP/s fp32, 100 bf16, 1 SM (waves are exact), interconnect 200 GB/s both ways
TOY = GpuSpec("toy", "Toy", memory_bytes=10 * 10**9, bandwidth_bytes_per_s=1e12,
              peak_flops={"fp32": 10e12, "bf16": 100e12, "fp16": 100e12, "tf32": 50e12},
              sm_count=1, interconnect_bytes_per_s=200e9, match=("Toy GPU",))
P = K.load_params()
# the profiling host's own timings are not what the model prices: the reference host's are
HOST = HostInfo(dispatch_s=10e-6, module_call_s=5e-6, module_calls_per_step=4, method="test")
OP_S = REF.dispatch_s + CUDA_LAUNCH_S          # one op on the host: the reference's dispatch + a launch
# 1e9 bytes of elementwise work: 1e9 / (eff x 1e12) on the device, 2 launches on the host
ADD = OpCost("aten.add.Tensor", "float32", 2, 0, 6 * 10**8, 4 * 10**8, "forward",
             shapes=[[1000], [1000]], out_shapes=[[1000]])
TINY = OpCost("aten.mul.Tensor", "float32", 1000, 0, 12_000, 4_000, "backward",
              shapes=[[1], [1]], out_shapes=[[1]])


def _add_s() -> float:
    return 2 * K.stream_s(5 * 10**8, "elementwise", TOY, P)


def test_a_phase_is_the_slower_of_device_and_host():
    prof = Profile(ops=[ADD, TINY], host=HOST)
    sc = cost_step(prof, TOY, Policy())
    # forward: device 2 x (floor + 5e8 / (eff x 1e12)); host 2 ops + 4 module calls on the reference host
    assert sc.device_s["forward"] == pytest.approx(_add_s())
    assert sc.host_s["forward"] == pytest.approx(2 * OP_S + 4 * REF.module_call_s)
    assert sc.bound["forward"] == "device"
    # backward: 1000 tiny launches: device 1000 x floor, host 1000 x ~5.7 us: host-bound
    assert sc.host_s["backward"] == pytest.approx(1000 * OP_S)
    assert sc.device_s["backward"] == pytest.approx(1000 * K.stream_s(16, "elementwise", TOY, P))
    assert sc.bound["backward"] == "host"
    assert sc.phase_s["backward"] == pytest.approx(1000 * OP_S)
    assert sc.step_s == pytest.approx(sum(sc.phase_s.values()))
    assert sc.launches == 1002


def test_the_loops_own_python_stays_on_the_host():
    # the loop's Python is counted (bytecodes), not timed: 30 ms of wall time seen here in the
    # "other" phase is this CPU's, 2 million bytecodes are the script's on any host
    counted = dataclasses.replace(HOST, opcodes={"other": 2_000_000})
    prof = Profile(ops=[ADD], host=counted, steps=Steps(step_s=[0.5], phase_s={"other": 0.03}))
    assert cost_step(prof, TOY).phase_s["other"] == pytest.approx(2_000_000 * REF.opcode_s)
    assert cost_step(dataclasses.replace(prof, host=HOST), TOY).phase_s["other"] == 0.0


def test_data_wait_without_workers_is_every_batch():
    # 0.1 s to make a batch in the main process, 1 batch a step: the GPU waits 0.1 s
    prof = Profile(data=DataInfo(batch_s=0.1, num_workers=0, batches_per_step=1.0), ops=[ADD], host=HOST)
    wait, info = data_wait_s(prof, compute_s=0.002)
    assert wait == pytest.approx(0.1)
    assert "num_workers=0" in info["method"]
    assert cost_step(prof, TOY).phase_s["data"] == pytest.approx(0.1)


def test_workers_hide_what_the_compute_covers():
    # 4 workers at 0.1 s a batch deliver one batch per 0.025 s; the GPU computes 0.01 s: waits 0.015 s
    prof = Profile(data=DataInfo(batch_s=0.1, num_workers=4, batches_per_step=1.0))
    assert data_wait_s(prof, 0.01)[0] == pytest.approx(0.015)
    assert data_wait_s(prof, 0.05)[0] == 0.0              # compute longer than a batch's share: hidden


def test_unknown_batch_time_projects_no_wait_only_the_copy():
    # a CPU profile: 2 MB batches cross PCIe at 25 GB/s = 8e-5 s; the 0.02 s this CPU waited is
    # its own (a projection never reads the profiling machine's wall time)
    prof = Profile(data=DataInfo(batch_bytes=2 * 10**6), steps=Steps(phase_s={"data": 0.02}))
    wait, info = data_wait_s(prof, 0.01)
    assert PCIE_BYTES_PER_S == 25e9
    assert wait == pytest.approx(2e6 / 25e9)
    assert info["h2d_copy_s"] == pytest.approx(8e-5)


def test_compile_fuses_the_ops_between_matmuls():
    fusion = {"forward": {"gaps": 1, "ops": 2, "bytes": 10**9, "fused_bytes": 2.5 * 10**8}}
    prof = Profile(ops=[ADD], host=HOST, fusion=fusion)
    eager = cost_step(prof, TOY, Policy())
    fused = cost_step(prof, TOY, Policy(compiled=True))
    # one kernel moving a quarter of the bytes: 2.5e8 / (eff x 1e12) + floor
    assert fused.device_s["forward"] == pytest.approx(K.stream_s(2.5e8, "elementwise", TOY, P))
    assert fused.launches == 1 and eager.launches == 2
    assert fused.host_s["forward"] == pytest.approx(CUDA_LAUNCH_S)    # no per-op dispatch
    assert any("torch.compile" in n for n in fused.notes)
    # an older profile without fusion groups: compile is not costed, and the note says so
    assert "not costed" in cost_step(Profile(ops=[ADD], host=HOST), TOY, Policy(compiled=True)).notes[0]


def test_ring_allreduce_and_ddp_overlap():
    # 8 GPUs, 1 GB: 2 * 7/8 * 1e9 / (0.77 * 100e9) + 2 * 7 * 5 us
    t = ring_allreduce_s(1e9, 8, TOY)
    assert t == pytest.approx(2 * 7 / 8 * 1e9 / (NCCL_BUS_EFF * 100e9) + 14 * HOP_LATENCY_S)
    assert ring_allreduce_s(1e9, 1, TOY) == 0.0
    # DDP: buckets all-reduce under backward; only what backward cannot cover shows, at least the last
    grads = 10 * DDP_BUCKET_BYTES
    long_bw = ddp_comm(grads, 8, TOY, backward_s=10.0)
    assert long_bw.exposed_s == pytest.approx(ring_allreduce_s(DDP_BUCKET_BYTES, 8, TOY))
    short_bw = ddp_comm(grads, 8, TOY, backward_s=0.0)
    assert short_bw.exposed_s == pytest.approx(short_bw.total_s)
    # FSDP moves two all-gathers of the parameters and a reduce-scatter of the gradients
    f = fsdp_comm(1e9, 1e9, 8, TOY, compute_s=0.0)
    assert f.bytes_per_gpu == pytest.approx(7 / 8 * 3e9)


def test_memory_fit_edges_and_mfu():
    usable = usable_memory_bytes(TOY)
    assert MEMORY_HEADROOM_FRAC == 0.10 and usable == 9 * 10**9
    assert fits_memory(usable, TOY) and not fits_memory(usable + 1, TOY) and fits_memory(0, TOY)
    # 1e12 FLOPs in 0.2 s = 5e12 FLOP/s over a 10e12 peak = 0.5
    assert mfu(1e12, 0.2, 10e12) == pytest.approx(0.5)
    assert mfu(1e12, None, 10e12) is None and mfu(0, 0.2, 10e12) is None


MM = OpCost("aten.mm", "float32", 1, 2 * 4096**3, 3 * 4 * 4096**2, 4 * 4096**2, "forward",
            shapes=[[4096, 4096], [4096, 4096]], out_shapes=[[4096, 4096]], autocast="low",
            autocast_bytes=3 * 2 * 4096**2)


def _cpu_profile(**kw) -> Profile:
    base = dict(device=Device(type="cpu", name="x86"), ops=[MM, ADD], host=HOST,
                flops=Flops(per_step=2 * 4096**3, model_per_step=2 * 4096**3),
                memory=Memory(peak_bytes=5 * 10**9), steps=Steps(step_s=[3.0, 3.0]))
    base.update(kw)
    return Profile(**base)


def test_project_a_cpu_profile_with_the_cost_model():
    out = project(_cpu_profile(), {"toy": TOY})
    p = out["toy"]
    sc = cost_step(_cpu_profile(), TOY)
    assert p.method == "cost_model" and p.measured_step_s is None
    assert p.step_s == pytest.approx(sc.step_s)          # the model, not the CPU's 3 s
    assert sum(p.phase_s.values()) == pytest.approx(p.step_s)
    assert p.step_s_bf16 < p.step_s
    # MFU from model FLOPs at the fp32 peak; HFU the same here (no recomputation)
    assert p.mfu == pytest.approx(2 * 4096**3 / p.step_s / 10e12)
    assert p.hfu == pytest.approx(p.mfu)
    assert p.detail["bound"]["forward"] == "device" and p.detail["usable_bytes"] == 9 * 10**9


def test_project_tf32_and_memory_not_fitting():
    prof = _cpu_profile(precision=Precision(float32_matmul_precision="high"), memory=Memory(peak_bytes=12 * 10**9))
    p = project(prof, {"toy": TOY})["toy"]
    assert p.detail["compute_key"] == "tf32" and not p.fits
    assert p.step_s < project(_cpu_profile(), {"toy": TOY})["toy"].step_s


def test_project_flops_only_is_a_lower_bound_at_the_peak():
    prof = _cpu_profile(ops=[], flops=Flops(per_step=10**12))
    p = project(prof, {"toy": TOY})["toy"]
    assert p.method == "flops_only" and "lower bound" in p.detail["ops_note"]
    # 1e12 FLOPs at 10e12 (host: one dispatch, far shorter)
    assert p.step_s == pytest.approx(0.1)
    assert p.step_s_bf16 == pytest.approx(0.01)


def test_a_measured_gpu_recalibrates_the_others():
    fast = dataclasses.replace(TOY, id="fast", name="Fast", bandwidth_bytes_per_s=2e12,
                               peak_flops={k: 2 * v for k, v in TOY.peak_flops.items()}, match=())
    prof = _cpu_profile(device=Device(type="cuda", name="Toy GPU"))
    model_toy = cost_step(prof, TOY)
    # measured: the model's forward time x 1.5
    measured = 1.5 * model_toy.phase_s["forward"]
    prof = dataclasses.replace(prof, steps=Steps(step_s=[measured], phase_s={"forward": measured}))
    out = project(prof, {"toy": TOY, "fast": fast})
    assert out["toy"].method == "measured" and out["toy"].step_s == pytest.approx(measured)
    assert out["toy"].detail["model_error_frac"] == pytest.approx(1 / 1.5 - 1)
    f = out["fast"]
    assert f.method == "calibrated" and f.detail["calibration"]["factors"]["forward"] == pytest.approx(1.5)
    # the fast GPU's modelled forward, scaled by the same 1.5
    model_fast = cost_step(prof, fast)
    assert f.phase_s["forward"] == pytest.approx(1.5 * model_fast.device_s["forward"])


def test_calibration_is_clamped_and_the_rest_kept_as_host_time():
    prof = _cpu_profile(device=Device(type="cuda", name="Toy GPU"))
    model = cost_step(prof, TOY).phase_s["forward"]
    lo, hi = CALIBRATION_BOUNDS
    measured = 10 * hi * model                        # far more than the model can explain
    prof = dataclasses.replace(prof, steps=Steps(step_s=[measured], phase_s={"forward": measured}))
    calib = project(prof, {"toy": TOY})["toy"]
    assert calib.method == "measured"
    other = project(prof, {"toy": TOY, "twin": dataclasses.replace(TOY, id="twin", match=())})["twin"]
    assert other.detail["calibration"]["clamped"] == ["forward"]
    # the same GPU under another name: the clamped factor and the unexplained rest give the measurement
    assert other.step_s == pytest.approx(measured, rel=1e-6)


def test_gpu_not_in_catalog_falls_back_to_the_cost_model():
    prof = _cpu_profile(device=Device(type="cuda", name="NVIDIA Gamma"))
    assert project(prof, {"toy": TOY})["toy"].method == "cost_model"


def test_real_catalog_t4_projects_fp16_for_bf16():
    out = project(_cpu_profile(), load_catalog(user=False))
    assert out["t4"].detail["autocast_dtype"] == "float16"
    assert out["h100-sxm"].step_s < out["t4"].step_s


def test_measured_kernel_times_recalibrate_by_class():
    """A GPU profile with its kernels timed: each class's device time on the other GPUs is
    scaled by measured / modelled on the measured one (GEMMs 2x slower than modelled here)."""
    from ccprof.hardware.translate import translate

    fast = dataclasses.replace(TOY, id="fast", name="Fast", bandwidth_bytes_per_s=2e12,
                               peak_flops={k: 2 * v for k, v in TOY.peak_flops.items()}, match=())
    prof = _cpu_profile(device=Device(type="cuda", name="Toy GPU"))
    model = {k.cls: k.device_s for k in translate(prof, TOY)}
    kernel_s = {"aten.mm": 2 * model["gemm"], "aten.add": model["elementwise"]}
    measured = cost_step(prof, TOY).step_s + model["gemm"]
    prof = dataclasses.replace(prof, kernel_s=kernel_s, steps=Steps(step_s=[measured]))
    out = project(prof, {"toy": TOY, "fast": fast})
    cal = out["fast"].detail["calibration"]
    assert cal["class_factors"]["gemm"] == pytest.approx(2.0)
    assert cal["class_factors"]["elementwise"] == pytest.approx(1.0)
    fast_model = {k.cls: k.device_s for k in translate(prof, fast)}
    assert out["fast"].detail["by_class_s"]["gemm"] == pytest.approx(2 * fast_model["gemm"])
    assert out["toy"].detail["model_error_frac"] == pytest.approx(cost_step(prof, TOY).step_s / measured - 1)


def test_kernel_pass_aggregates_by_aten_op():
    """The kernel-timing pass, run on the CPU (its CPU times stand in for device times)."""
    import torch

    from ccprof.profiler.kernel_times import KernelPass

    kp = KernelPass(cuda=False)
    kp.start()
    a = torch.randn(64, 64)
    (a @ a).relu().sum()
    got = kp.stop()
    assert "aten.mm" in got and all(k.startswith("aten.") for k in got) and all(v > 0 for v in got.values())


def test_module_s_splits_each_row_over_the_modules_owning_its_calls():
    spec = load_catalog(user=False)["a100-80gb"]
    mm = OpCost("aten.mm", count=3, flops=3 * 2 * 2048 ** 3, bytes_read=3 * 2 * 4 * 2048 ** 2,
                bytes_written=3 * 4 * 2048 ** 2, shapes=[[2048, 2048], [2048, 2048]], out_shapes=[[2048, 2048]],
                modules={"h.0.fc": 1, "h.1.fc": 1})          # the third call ran outside every module
    p = Profile(ops=[mm], flops=Flops(per_step=mm.flops), host=HOST)
    per_call = cost_step(p, spec, data=False).device_s["forward"] / 3
    got = module_s(p, spec, names=["", "h", "h.0", "h.0.fc", "h.1", "h.1.fc"])
    assert got["h.0.fc"] == pytest.approx(per_call) and got["h.1.fc"] == pytest.approx(per_call)
    # parents add their children; the unowned call is in no module
    assert got["h"] == pytest.approx(2 * per_call) and got[""] == pytest.approx(2 * per_call)
    # without the names: every dotted prefix, and no root that owns nothing itself
    assert "" not in module_s(p, spec) and module_s(p, spec)["h"] == pytest.approx(2 * per_call)
    # rows from before ccprof kept owners
    assert module_s(dataclasses.replace(p, ops=[dataclasses.replace(mm, modules={})]), spec) == {}


def test_attach_keeps_the_target_gpus_module_seconds():
    from tests.helpers.profiles import gpt_plain, priced
    p = priced(gpt_plain())
    proj = p.projection[p.cost.gpu]
    ms = proj.module_s
    assert ms["blocks.0"] == pytest.approx(ms["blocks.1"]) == pytest.approx(ms["blocks.2"])
    assert ms["blocks"] == pytest.approx(sum(ms[f"blocks.{i}"] for i in range(3)))
    # the modules' kernels are part of the step's device time, never more
    assert 0 < ms[""] <= sum(proj.detail["device_s"].values())
    assert all(not g.module_s for gid, g in p.projection.items() if gid != p.cost.gpu)
    # and each op row's seconds, summing to the step's modelled device time
    assert len(proj.op_s) == len(p.ops) and all(not g.op_s for gid, g in p.projection.items() if gid != p.cost.gpu)
    assert sum(proj.op_s) == pytest.approx(sum(proj.detail["device_s"].values()), rel=1e-9)
    assert Profile.from_json(p.to_json()) == p


def test_op_s_costs_each_row_and_sums_to_the_steps_device_time():
    """op_s[i] is ops[i]'s kernels; the optimizer's regrouped kernels are split over their rows."""
    from tests.helpers.profiles import hand_profile
    spec = load_catalog(user=False)["a100-80gb"]
    p = hand_profile()
    for policy in (policy_for(p, spec), dataclasses.replace(policy_for(p, spec), optimizer="fused"),
                   dataclasses.replace(policy_for(p, spec), optimizer="for_loop", autocast="bfloat16")):
        got = op_s(p, spec, policy)
        assert len(got) == len(p.ops)
        assert sum(got) == pytest.approx(sum(cost_step(p, spec, policy).device_s.values()), rel=1e-9)
        by_phase = {ph: sum(s for o, s in zip(p.ops, got) if o.phase == ph) for ph in ("forward", "backward",
                                                                                     "optimizer")}
        assert by_phase == pytest.approx({ph: cost_step(p, spec, policy).device_s[ph] for ph in by_phase})
    # with class factors (a GPU's measured kernels), as the step is costed with them
    cf = {"gemm": 2.0}
    assert sum(op_s(p, spec, class_factors=cf)) == pytest.approx(
        sum(cost_step(p, spec, class_factors=cf).device_s.values()))


def test_compile_fuses_the_model_and_leaves_a_loss_outside_it_eager():
    """torch.compile(model) compiles the model's modules: an op that ran outside them (a loss on
    its output) keeps its eager kernel, while the model's ops fuse as before."""
    inside = dataclasses.replace(ADD, modules={"mlp": 2})
    loss = dataclasses.replace(ADD, op="aten.mul.Tensor", modules={})
    fusion = {"forward": {"gaps": 1, "ops": 2, "bytes": 10**9, "fused_bytes": 2.5 * 10**8}}
    prof = Profile(ops=[inside, loss], host=HOST, fusion=fusion)
    eager = {k.op: k for k in translate(prof, TOY, Policy())}
    assert eager["aten.add.Tensor"].in_model and not eager["aten.mul.Tensor"].in_model
    fused = cost_step(prof, TOY, Policy(compiled=True))
    # the model's add: a quarter of its bytes in one kernel; the loss's mul: as eager
    assert fused.by_class["fused"] == pytest.approx(K.stream_s(eager["aten.add.Tensor"].nbytes / 4, "elementwise",
                                                               TOY, P))
    assert fused.by_class["elementwise"] == pytest.approx(eager["aten.mul.Tensor"].device_s)
