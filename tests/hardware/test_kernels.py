"""The kernel model: its arithmetic on toy GPUs with round numbers, and predict_op_s against
kernels measured on real GPUs (rows of ../shared/calibration and XLA's H100 table, inlined)."""
from __future__ import annotations

import dataclasses
import math

import pytest

from ccprof.hardware import kernels as K
from ccprof.hardware import load_catalog, predict_op_s
from ccprof.hardware.catalog import GpuSpec
from tests.helpers.paths import ROOT

CAL_GPUS = ROOT / "bench" / "calibration" / "gpus.toml"

# 2 SMs, 1 TFLOP/s fp32 and 2 tensor, 1 TB/s
TOY = GpuSpec("toy", "Toy", memory_bytes=10**10, bandwidth_bytes_per_s=1e12,
              peak_flops={"fp32": 1e12, "bf16": 2e12, "tf32": 1.5e12}, sm_count=2)
ONE_TILE = K.GemmParams(tiles=((128, 128, 1),), tile_eff=(0.5,), k_overhead=0.0, splitk_s=0.0,
                        operand_bw_eff=1.0, occupancy_gamma=0.0, splits=(1,))
TOY_PARAMS = dataclasses.replace(
    K.load_params(), gemm={"simt": ONE_TILE, "tensor16": ONE_TILE, "tf32": ONE_TILE},
    stream_eff={"elementwise": 0.5, "softmax": 0.25, "norm": 0.25, "reduce": 0.25},
    gemm_floor_s=0.0, stream_floor_s=1e-6, conv_eff=1.0, attention_eff=1.0, simt_pj_per_flop_12nm=0.0)


def test_op_classes():
    assert K.op_class("aten.mm.default") == "gemm"
    assert K.op_class("aten::addmm") == "gemm"
    assert K.op_class("aten.convolution_backward.default") == "conv_backward"
    assert K.op_class("aten._scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert K.op_class("aten._scaled_dot_product_efficient_attention_backward") == "attention_backward"
    assert K.op_class("aten.native_layer_norm") == "norm"
    # CUDA's fused RMSNorm is a norm kernel, not a fused optimizer or an elementwise one (its "_fused_" prefix)
    assert K.op_class("aten._fused_rms_norm") == K.op_class("aten._fused_rms_norm_backward.default") == "norm"
    assert K.op_class("aten._fused_adam_") == "fused_optimizer"
    assert K.op_class("aten._log_softmax_backward_data") == "softmax"
    assert K.op_class("aten.nll_loss_forward") == "reduce"
    assert K.op_class("aten._foreach_addcdiv_") == "foreach"
    assert K.op_class("aten._fused_adamw_") == "fused_optimizer"
    assert K.op_class("aten._local_scalar_dense") == "host"
    assert K.op_class("aten.transpose.int") == "view"
    assert K.op_class("aten.gelu") == "elementwise"
    assert K.op_class("aten.something_new") == "elementwise"      # unknown: bytes over bandwidth


def test_full_waves():
    # 256 x 256 output = 4 tiles of 128 x 128 on 2 SMs (1 CTA each): 2 full waves.
    # one tile: 2 * 128 * 128 * 1000 = 32.768e6 FLOPs at 0.5 * 1e12 / 2 = 2.5e11 FLOP/s = 1.31072e-4 s
    t = K.gemm_core(1, 256, 256, 1000, peak=1e12, sms=2, bw=1e12, ebytes=4, p=ONE_TILE)
    assert t == pytest.approx(2 * 1.31072e-4)


def test_partial_wave_and_occupancy():
    # 3 tiles on 2 SMs: one full wave and a last wave of 1 tile: 2 waves, no saving at c = 1
    t3 = K.gemm_core(1, 384, 128, 1000, peak=1e12, sms=2, bw=1e12, ebytes=4, p=ONE_TILE)
    assert t3 == pytest.approx(2 * 1.31072e-4)
    # 64 x 64 tiles, 4 CTAs per SM: one tile alone on an SM gets 1/4 of its rate (gamma 0), so it
    # takes a full wave: 4 * (2 * 64 * 64 * 1000) / (0.5 * 1e12 / 2) = 4 * 8.192e6 / 2.5e11 = 1.31072e-4 s
    small = dataclasses.replace(ONE_TILE, tiles=((64, 64, 4),))
    assert K.gemm_core(1, 64, 64, 1000, peak=1e12, sms=2, bw=1e12, ebytes=4, p=small) == pytest.approx(1.31072e-4)
    # gamma 0.5: a thin wave takes (1/4)^0.5 = 0.5 of the full-wave time; gamma 1: 1/4 of it
    half = dataclasses.replace(small, occupancy_gamma=0.5)
    assert K.gemm_core(1, 64, 64, 1000, peak=1e12, sms=2, bw=1e12, ebytes=4, p=half) == pytest.approx(0.5 * 1.31072e-4)
    full = dataclasses.replace(small, occupancy_gamma=1.0)
    assert K.gemm_core(1, 64, 64, 1000, peak=1e12, sms=2, bw=1e12, ebytes=4, p=full) == pytest.approx(0.25 * 1.31072e-4)


def test_split_k_for_long_k():
    # one 128 x 128 tile with K = 1024 on 2 SMs: unsplit 2*128*128*1024 / 2.5e11 = 1.34218e-4 s;
    # split 2 (each slice K=512 >= 128 * 2): 2 tiles, one wave of 6.7109e-5 s, plus the reduction:
    # 1e-6 s + 4 * 128 * 128 * 3 / 1e12 = 1.966e-7 s -> 6.8306e-5 s
    p = dataclasses.replace(ONE_TILE, splits=(1, 2), splitk_s=1e-6)
    t = K.gemm_core(1, 128, 128, 1024, peak=1e12, sms=2, bw=1e12, ebytes=4, p=p)
    assert t == pytest.approx(6.7109e-5 + 1e-6 + 1.96608e-7, rel=1e-4)


def test_operands_bound_thin_gemms():
    # K = 1: 2 * 128 * 128 * 1 FLOPs is nothing; operands 4 * (4096 + 4096 + 4096*4096)... here
    # m = n = 4096: 4 * (4096 + 4096 + 16_777_216) bytes = 6.7142e7 B over 1e12 B/s = 6.7142e-5 s
    t = K.gemm_core(1, 4096, 4096, 1, peak=1e12, sms=2, bw=1e12, ebytes=4, p=ONE_TILE)
    compute = math.ceil(4096 / 128) ** 2 / 2 * 2 * 128 * 128 * 1 / 2.5e11
    assert t == pytest.approx(max(6.7141632e-5, compute))


def test_stream_kernels():
    # 1e9 bytes at 0.5 x 1 TB/s = 2e-3 s, plus the 1 us floor; softmax's share is 0.25
    assert K.stream_s(1e9, "elementwise", TOY, TOY_PARAMS) == pytest.approx(2e-3 + 1e-6)
    assert K.stream_s(1e9, "softmax", TOY, TOY_PARAMS) == pytest.approx(4e-3 + 1e-6)


def test_power_cap_of_low_power_boards():
    p = K.load_params()
    t4 = load_catalog(user=False)["t4"]
    # 70 W / (8.1e12 FLOP/s x pJ/FLOP at 12 nm x 12/12)
    want = min(1.0, 70 / (8.1e12 * p.simt_pj_per_flop_12nm * 1e-12))
    assert K.simt_sustain(t4, p) == pytest.approx(want)
    assert want < 0.8                                   # the T4 cannot hold its boost clock on fp32
    assert K.simt_sustain(load_catalog(user=False)["h100-sxm"], p) == 1.0
    assert K.simt_sustain(TOY, p) == 1.0                # no TDP or node: no cap


def test_math_units():
    cat = load_catalog(user=False)
    assert K.math_unit("bfloat16", cat["a100-80gb"]) == "tensor16"
    assert K.math_unit("float32", cat["a100-80gb"]) == "simt"
    assert K.math_unit("float32", cat["a100-80gb"], tf32=True) == "tf32"
    assert K.math_unit("tfloat32", cat["v100-16gb"]) == "simt"       # no TF32 units on Volta
    assert K.math_unit("bfloat16", cat["t4"]) == "tensor16"          # runs as fp16 there
    assert K.peak_for("tensor16", "bfloat16", cat["t4"]) == 65e12


def test_conv_gemm_dims():
    # forward: x (8, 16, 32, 32), w (32, 16, 3, 3), y (8, 32, 32, 32): M = 8*32*32, N = 32, K = 16*9
    assert K.conv_gemms("convolution", [[8, 16, 32, 32], [32, 16, 3, 3]], [[8, 32, 32, 32]]) == [K.Gemm(1, 8192, 32, 144)]
    # backward (grad_out, x, w): dgrad M = 8*32*32, N = 16, K = 32*9; wgrad M = 32, N = 16*9, K = 8*32*32
    bw = K.conv_gemms("convolution_backward", [[8, 32, 32, 32], [8, 16, 32, 32], [32, 16, 3, 3]],
                      [[8, 16, 32, 32], [32, 16, 3, 3]])
    assert bw == [K.Gemm(1, 8192, 16, 288), K.Gemm(1, 32, 144, 8192)]
    # the first layer computes no input gradient: only wgrad (the weight's shape among the outputs)
    first = K.conv_gemms("convolution_backward", [[8, 64, 112, 112], [8, 3, 224, 224], [64, 3, 7, 7]],
                         [[64, 3, 7, 7]])
    assert first == [K.Gemm(1, 64, 147, 8 * 112 * 112)]
    # groups = channels (depthwise): one GEMM per group
    assert K.conv_gemms("convolution", [[2, 8, 4, 4], [8, 1, 3, 3]], [[2, 8, 4, 4]], {"groups": 8}) == [K.Gemm(8, 32, 1, 9)]


def test_attention_as_one_pass():
    # (b, h, s, d) = (2, 4, 128, 64): forward Gemm(8, 128, 64, 2*128) = 4*8*128*128*64 FLOPs
    fwd = K.attention_gemms("_scaled_dot_product_flash_attention_for_cpu", [[2, 4, 128, 64]] * 3)
    assert fwd == [K.Gemm(8, 128, 64, 256)] and fwd[0].flops == 4 * 8 * 128 * 128 * 64
    bwd = K.attention_gemms("_scaled_dot_product_flash_attention_for_cpu_backward", [[2, 4, 128, 64]] * 5)
    assert bwd == [K.Gemm(8, 128, 64, 640)] and bwd[0].flops == 10 * 8 * 128 * 128 * 64


def test_causal_attention_skips_half():
    shapes = [[2, 4, 1024, 64]] * 3
    full = K.kernel_s("aten._scaled_dot_product_flash_attention_for_cpu", shapes, "bfloat16", TOY, TOY_PARAMS,
                      out_shapes=[[2, 4, 1024, 64]], nbytes=0)
    causal = K.kernel_s("aten._scaled_dot_product_flash_attention_for_cpu", shapes, "bfloat16", TOY, TOY_PARAMS,
                        out_shapes=[[2, 4, 1024, 64]], attrs={"causal": True}, nbytes=0)
    assert causal == pytest.approx(full / 2)


def test_unknown_ops_never_raise():
    # 2 x 1000 elements x 4 bytes = 8,000 bytes over the L4's bandwidth, plus the floor
    p = K.load_params()
    l4 = load_catalog(user=False)["l4"]
    t = predict_op_s("aten.some_future_op", [(1000,), (1000,)], "float32", "l4")
    assert t == pytest.approx(p.stream_floor_s + 12_000 / (p.stream_eff["elementwise"] * l4.bandwidth_bytes_per_s))
    assert predict_op_s("aten.add.Tensor", [(), ()], "float32", "l4") > 0      # 0-dim inputs


def test_shape_less_rows_cost_their_flops_at_the_peak():
    # profiles from before shapes were recorded: 1e12 FLOPs at the 1e12 fp32 peak = 1 s
    assert K.kernel_s("aten.mm", [], "float32", TOY, TOY_PARAMS, nbytes=0, flops=1e12) == pytest.approx(1.0)


# Kernels measured on real GPUs: NeuSight's training set (../shared/calibration, rows read
# 2026-12; latency includes the harness's host floor, negligible above 1 ms) and XLA's H100
# matmul table (bench/calibration/xla_matmul.csv). The model's own fit saw these rows.
MEASURED = [
    # op, input shapes, GPU, measured ms, tolerance
    ("aten.bmm", [(27, 399, 1007), (27, 1007, 804)], "a100-pcie-40gb", 1.337195, 0.25),
    ("aten.bmm", [(30, 213, 818), (30, 818, 875)], "v100-pcie-32gb", 1.003755, 0.25),
    ("aten.mm", [(227, 947), (947, 32299)], "a100-pcie-40gb", 1.039595, 0.25),
    ("aten.mm", [(150, 396), (396, 59998)], "v100-pcie-32gb", 1.022805, 0.25),
    ("aten.add.Tensor", [(13909, 3957), (13909, 3957)], "p100-pcie", 1.200467, 0.10),
    ("aten.add.Tensor", [(6302, 3538), (6302, 3538)], "t4", 1.110598, 0.10),
    ("aten._softmax", [(6434, 3982)], "t4", 1.014630, 0.10),
    ("aten.native_layer_norm", [(15072, 4064)], "v100-pcie-32gb", 1.051125, 0.10),
]


@pytest.mark.parametrize("op,shapes,gpu,ms,tol", MEASURED)
def test_predict_op_s_on_measured_kernels(op, shapes, gpu, ms, tol):
    cat = load_catalog(CAL_GPUS, user=False)
    assert predict_op_s(op, shapes, "float32", gpu, catalog=cat) * 1e3 == pytest.approx(ms, rel=tol)


def test_predict_conv_on_a_measured_kernel():
    # NeuSight conv: A100 80GB PCIe, batch 43, 132 -> 250 channels, 3x3, 41x41, stride 1, pad 1: 1.4517 ms.
    # Convolutions are the model's weakest class (held-out median ~20-30%): 35% tolerance.
    cat = load_catalog(CAL_GPUS, user=False)
    t = predict_op_s("aten.convolution", [(43, 132, 41, 41), (250, 132, 3, 3)], "float32", "a100-pcie-80gb",
                     catalog=cat, stride=1, padding=1)
    assert t * 1e3 == pytest.approx(1.4517, rel=0.35)


@pytest.mark.parametrize("b,m,n,k,flops_per_s", [
    (1, 4096, 4096, 4096, 783328793548203),
    (4, 1024, 2048, 2048, 712739345502821),
    (1, 256, 2048, 256, 41838443890274),
    (1, 512, 256, 512, 21788592207792),
])
def test_predict_op_s_on_xla_h100_bf16(b, m, n, k, flops_per_s):
    measured_s = 2 * b * m * n * k / flops_per_s
    shapes = [(b, m, k), (b, k, n)] if b > 1 else [(m, k), (k, n)]
    got = predict_op_s("aten.bmm" if b > 1 else "aten.mm", shapes, "bfloat16", "h100-sxm")
    assert got == pytest.approx(measured_s, rel=0.10)


def test_predict_op_s_docstring_example():
    # 2 * 4096^3 FLOPs on an H100 in bf16: XLA measured 1.755e-4 s (783 TFLOP/s, 79% of 989)
    assert predict_op_s("aten.mm", [(4096, 4096), (4096, 4096)], "bfloat16", "h100-sxm") == pytest.approx(1.755e-4, rel=0.05)
