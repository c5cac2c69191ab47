"""Roofline, bf16 and Habitat arithmetic on toy GPUs with round numbers (no torch needed)."""
from __future__ import annotations

import dataclasses

import pytest

from ccprof.hardware.catalog import GpuSpec
from ccprof.hardware.roofline import (LAUNCH_S_PER_KERNEL, MEMORY_HEADROOM_FRAC, as_bf16,
                                      fits_memory, habitat_gamma, habitat_scale_s, is_tensor_op,
                                      mfu, op_base, op_time_s, peak_key, project,
                                      roofline_step_s, usable_memory_bytes)
from ccprof.profiler.profile import Device, Flops, Memory, OpCost, Precision, Profile, Steps

# 10 GB, 1 TB/s, 10 TFLOP/s fp32, 50 tf32, 100 bf16/fp16
TOY = GpuSpec("toy", "Toy", memory_bytes=10 * 10**9, bandwidth_bytes_per_s=1e12,
              peak_flops={"fp32": 10e12, "tf32": 50e12, "bf16": 100e12, "fp16": 100e12})
# a T4-like toy: fp16 tensor cores, no bf16, no tf32
NO_BF16 = GpuSpec("nobf16", "NoBF16", memory_bytes=16 * 10**9, bandwidth_bytes_per_s=0.5e12,
                  peak_flops={"fp32": 8e12, "fp16": 64e12})

MM = OpCost("aten.mm.default", "float32", count=10, flops=2 * 10**12,
            bytes_read=10**9, bytes_written=10**9)
ADD = OpCost("aten.add.Tensor", "float32", count=4, flops=0, bytes_read=2 * 10**9, bytes_written=10**9)
VIEW = OpCost("aten.view.default", "float32", count=100, flops=0, bytes_read=10**9, bytes_written=10**9)


def test_op_names_normalize():
    assert op_base("aten.mm.default") == "mm"
    assert op_base("aten::addmm") == "addmm"
    assert op_base("bmm") == "bmm"
    assert is_tensor_op("aten._scaled_dot_product_flash_attention_backward.default")
    assert is_tensor_op("aten.convolution_backward.default")
    assert not is_tensor_op("aten.gelu.default")


def test_peak_keys():
    assert peak_key("float32", tensor_op=True) == "fp32"
    assert peak_key("float32", tensor_op=True, tf32=True) == "tf32"
    assert peak_key("bfloat16", tensor_op=True) == "bf16"
    assert peak_key("float8_e4m3fn", tensor_op=True) == "fp8"
    assert peak_key("bfloat16", tensor_op=False) == "fp32"   # vector units


def test_matmul_fp32_is_compute_bound():
    # compute 2e12 / 10e12 = 0.2 s; memory 2e9 / 1e12 = 0.002 s; launch 10 * 5e-6 = 5e-5 s
    assert op_time_s(MM, TOY) == pytest.approx(0.2 + 10 * 5e-6)
    assert LAUNCH_S_PER_KERNEL == 5e-6


def test_matmul_tf32_uses_tf32_peak():
    # 2e12 / 50e12 = 0.04 s (+ 5e-5 launch)
    assert op_time_s(MM, TOY, tf32_matmul=True) == pytest.approx(0.04 + 5e-5)


def test_elementwise_is_bandwidth_bound():
    # 3e9 bytes / 1e12 B/s = 0.003 s; launch 4 * 5e-6 = 2e-5 s
    assert op_time_s(ADD, TOY) == pytest.approx(0.003 + 2e-5)


def test_view_ops_cost_nothing():
    assert op_time_s(VIEW, TOY) == 0.0


def test_step_is_sum_of_ops_and_bf16_halves_matmul_bytes():
    # fp32: 0.20005 + 0.00302 = 0.20307
    assert roofline_step_s([MM, ADD, VIEW], TOY) == pytest.approx(0.20307)
    # bf16: mm 2e12/100e12 = 0.02 vs 1e9 bytes/1e12 = 0.001 -> 0.02 + 5e-5; add unchanged 0.00302
    assert roofline_step_s([MM, ADD], TOY, bf16=True) == pytest.approx(0.02005 + 0.00302)
    b = as_bf16(MM, TOY)
    assert (b.dtype, b.bytes_read, b.bytes_written) == ("bfloat16", 5 * 10**8, 5 * 10**8)
    assert as_bf16(ADD, TOY) is ADD


def test_bf16_projection_uses_fp16_without_bf16_units():
    assert as_bf16(MM, NO_BF16).dtype == "float16"
    # mm as fp16: 2e12/64e12 = 0.03125 vs 1e9/0.5e12 = 0.002 -> 0.03125 + 5e-5
    assert roofline_step_s([MM], NO_BF16, bf16=True) == pytest.approx(0.03125 + 5e-5)
    # a bf16 op on a GPU without bf16 units falls back to the fp32 peak: 2e12/8e12 = 0.25
    bf = dataclasses.replace(MM, dtype="bfloat16", count=0)
    assert op_time_s(bf, NO_BF16) == pytest.approx(0.25)


def test_habitat_gamma_and_scaling():
    assert habitat_gamma(0.0, 10.0) == 1.0       # memory-bound: bandwidth only
    assert habitat_gamma(10.0, 10.0) == 0.5      # at the ridge point
    assert habitat_gamma(20.0, 10.0) == 0.25     # 0.5 * 10 / 20
    # memory-bound op, destination bandwidth 2x: 1 s -> 0.5 s
    assert habitat_scale_s(1.0, flops=0, bytes_=1e9, src_peak=10e12, src_bw=1e12,
                           dst_peak=40e12, dst_bw=2e12) == pytest.approx(0.5)
    # at the ridge (I = R = 10): 1 * (1/2)^0.5 * (10/40)^0.5 = 0.70711 * 0.5 = 0.35355
    assert habitat_scale_s(1.0, flops=1e10, bytes_=1e9, src_peak=10e12, src_bw=1e12,
                           dst_peak=40e12, dst_bw=2e12) == pytest.approx(0.353553, rel=1e-5)
    # no bytes at all: pure compute, 1 * 10/40 = 0.25
    assert habitat_scale_s(1.0, flops=1e10, bytes_=0, src_peak=10e12, src_bw=1e12,
                           dst_peak=40e12, dst_bw=2e12) == pytest.approx(0.25)


def test_memory_fit_edges():
    usable = usable_memory_bytes(TOY)
    assert MEMORY_HEADROOM_FRAC == 0.10
    assert usable == 9 * 10**9                   # 10 GB * (1 - 0.10)
    assert fits_memory(usable, TOY)              # exactly at the limit fits
    assert not fits_memory(usable + 1, TOY)
    assert fits_memory(0, TOY)                   # unknown peak: assumed to fit
    assert not fits_memory(10 * 10**9, TOY)      # the whole card leaves no headroom


def test_mfu():
    # 1e12 FLOPs in 0.2 s = 5e12 FLOP/s over a 10e12 peak = 0.5
    assert mfu(1e12, 0.2, 10e12) == pytest.approx(0.5)
    assert mfu(1e12, None, 10e12) is None
    assert mfu(0, 0.2, 10e12) is None


def _cpu_profile(**kw) -> Profile:
    base = dict(device=Device(type="cpu", name="x86"), ops=[MM, ADD],
                flops=Flops(per_step=2 * 10**12), memory=Memory(peak_bytes=5 * 10**9),
                steps=Steps(step_s=[3.0, 3.0]))
    base.update(kw)
    return Profile(**base)


def test_project_cpu_profile_uses_roofline_not_cpu_time():
    out = project(_cpu_profile(), {"toy": TOY, "nobf16": NO_BF16})
    p = out["toy"]
    assert p.method == "roofline"
    assert p.step_s == pytest.approx(0.20307)            # as above, not the CPU's 3.0 s
    assert p.step_s_bf16 == pytest.approx(0.02307)
    assert p.fits and p.measured_step_s is None
    # mfu: 2e12 / 0.20307 / 10e12 (fp32 peak, no TF32) = 0.98488
    assert p.mfu == pytest.approx(2e12 / 0.20307 / 10e12)
    assert p.detail["usable_bytes"] == 9 * 10**9
    assert out["nobf16"].detail["autocast_dtype"] == "float16"


def test_project_tf32_and_memory_not_fitting():
    prof = _cpu_profile(precision=Precision(float32_matmul_precision="high"),
                        memory=Memory(peak_bytes=12 * 10**9))
    p = project(prof, {"toy": TOY})["toy"]
    assert p.step_s == pytest.approx(0.04005 + 0.00302)  # tf32 matmul
    assert p.detail["compute_key"] == "tf32"
    assert not p.fits                                    # 12 GB > 9 GB usable


def test_project_flops_only_when_no_ops():
    prof = _cpu_profile(ops=[], flops=Flops(per_step=10**12))
    p = project(prof, {"toy": TOY})["toy"]
    assert p.method == "flops_only"
    assert p.step_s == pytest.approx(0.1)                 # 1e12 / 10e12
    assert p.step_s_bf16 == pytest.approx(0.01)           # 1e12 / 100e12


# Source "a" (1 TB/s, 10 TFLOP/s fp32) and destination "b" (2 TB/s, 40 TFLOP/s).
A = GpuSpec("a", "NVIDIA Alpha", int(10e9), 1e12, {"fp32": 10e12}, match=("Alpha",))
B = GpuSpec("b", "NVIDIA Beta", int(20e9), 2e12, {"fp32": 40e12})
GPU_OPS = [OpCost("aten.mm.default", "float32", 0, 10**12, 5 * 10**8, 5 * 10**8),
           OpCost("aten.add.Tensor", "float32", 0, 0, 10**9, 0)]


def test_project_gpu_profile_measured_is_truth_and_habitat_scales_others():
    prof = Profile(device=Device(type="cuda", name="NVIDIA Alpha"), ops=GPU_OPS,
                   flops=Flops(per_step=10**12), steps=Steps(step_s=[0.202, 0.3, 0.202]))
    out = project(prof, {"a": A, "b": B})
    # median measured = 0.202 s; roofline on a: mm 0.1 s + add 0.001 s = 0.101 s
    assert out["a"].method == "measured"
    assert out["a"].step_s == out["a"].measured_step_s == pytest.approx(0.202)
    assert out["a"].detail["roofline_error_frac"] == pytest.approx((0.101 - 0.202) / 0.202)
    # shares: mm 0.202 * 0.1/0.101 = 0.2 s, add 0.002 s
    # mm: I = 1e12/1e9 = 1000 > R = 10 -> g = 0.5*10/1000 = 0.005
    #     0.2 * (1/2)^0.005 * (10/40)^0.995 = 0.2 * 0.996540 * 0.251737 = 0.050174
    # add: g = 1 -> 0.002 * 1/2 = 0.001;  total 0.051174
    assert out["b"].method == "habitat"
    assert out["b"].step_s == pytest.approx(0.051174, rel=1e-4)
    assert out["b"].detail["source_gpu"] == "a"


def test_habitat_keeps_data_wait_unscaled():
    prof = Profile(device=Device(type="cuda", name="NVIDIA Alpha"), ops=GPU_OPS,
                   steps=Steps(step_s=[0.252], phase_s={"data": 0.05}))
    # 0.05 s of data wait + the same 0.202 s of GPU work scaled as above
    assert project(prof, {"a": A, "b": B})["b"].step_s == pytest.approx(0.05 + 0.051174, rel=1e-4)


def test_gpu_not_in_catalog_falls_back_to_roofline():
    prof = Profile(device=Device(type="cuda", name="NVIDIA Gamma"), ops=GPU_OPS,
                   steps=Steps(step_s=[0.202]))
    out = project(prof, {"a": A, "b": B})
    assert out["a"].method == out["b"].method == "roofline"
    assert out["a"].step_s == pytest.approx(0.101)


def test_flops_only_counts_launches_per_leaf_module():
    from ccprof.profiler.profile import ModelInfo, ModuleStat

    model = ModelInfo(modules=[ModuleStat(""), ModuleStat("0"), ModuleStat("2"),
                               ModuleStat("3"), ModuleStat("3.fc")])
    prof = _cpu_profile(ops=[], flops=Flops(per_step=10**12), model=model)
    p = project(prof, {"toy": TOY})["toy"]
    # leaves: 0, 2, 3.fc -> 3 * 3 = 9 launches * 5e-6 s; plus 1e12 / 10e12 = 0.1 s
    assert p.step_s == pytest.approx(0.1 + 9 * 5e-6)
    assert "lower bound" in p.detail["ops_note"]
