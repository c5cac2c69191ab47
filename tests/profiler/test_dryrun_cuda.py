"""--dry-run's GPU (ccprof.profiler.dryrun_cuda): what a script asks torch.cuda, where its cuda
tensors go, and that everything is itself again afterwards."""
from __future__ import annotations

import torch

from ccprof.profiler.dryrun import dry_run, is_fake


def test_a_script_takes_its_cuda_branches_with_the_gpu_dtypes():
    with dry_run(cuda=True):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        assert device == "cuda" and torch.cuda.device_count() == 1 and torch.cuda.is_bf16_supported()
        assert torch.cuda.get_device_properties(0).total_memory == 80 * 2 ** 30
        m = torch.nn.Linear(8, 8).to(device)
        x = torch.randn(4, 8, device=device)
        y = torch.randn(4, 8).to(device, non_blocking=True) + torch.randn(4, 8).cuda()
        opt = torch.optim.AdamW(m.parameters(), fused=True)
        scaler = torch.amp.GradScaler("cuda")
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            out = m(x)
        with torch.cuda.amp.autocast():
            half = m(y)
        scaler.scale(out.float().sum()).backward()
        scaler.step(opt)            # found_inf reads 0: the step is taken
        scaler.update()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(); end.record(); torch.cuda.synchronize()
        assert start.elapsed_time(end) == 0.0
    assert out.dtype == torch.bfloat16 and half.dtype == torch.float16 and is_fake(out)
    assert "step" in opt.state[m.weight]
    # and torch is itself again
    assert not torch.cuda.is_available() and torch.cuda.device_count() == 0
    assert torch.randn(2).to("cpu").device.type == "cpu"


def test_without_the_gpu_the_dry_run_sees_this_machine():
    with dry_run():
        assert not torch.cuda.is_available()


def test_a_stream_block_selects_its_stream_for_the_ledger_and_the_default_comes_back():
    from ccprof.profiler.dryrun_cuda import current_stream_key
    with dry_run(cuda=True):
        default = torch.cuda.current_stream()
        assert current_stream_key() == 0 and torch.cuda.default_stream() is default
        side = torch.cuda.Stream()
        with torch.cuda.stream(side):
            assert torch.cuda.current_stream() is side and current_stream_key() == id(side)
            with torch.cuda.stream(None):            # selects nothing
                assert current_stream_key() == id(side)
        assert torch.cuda.current_stream() is default and current_stream_key() == 0
        # FSDP2 in a dry-run world selects its streams through torch.cpu (its mesh is mapped to the CPU)
        cpu_side = torch.cpu.Stream()
        with torch.cpu.stream(cpu_side):
            assert current_stream_key() == id(cpu_side)
        assert current_stream_key() == 0
        with torch.cuda.stream(side):
            pass
    with torch.cpu.stream(torch.cpu.Stream()):
        assert current_stream_key() == 0               # a CPU run has one stream


# --- device-conditional fast paths: F.rms_norm as CUDA's aten._fused_rms_norm ------------------
class _NormNet(torch.nn.Module):
    """A bf16 matmul feeding an ``nn.RMSNorm`` whose weight is ``norm_dtype``."""

    def __init__(self, d: int, norm_dtype: torch.dtype) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(d, d, bias=False, dtype=torch.bfloat16)
        self.norm = torch.nn.RMSNorm(d, eps=1e-6, dtype=norm_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.lin(x))


def _norm_step(norm_dtype: torch.dtype, dry: bool):
    """One forward and backward of ``_NormNet`` (x: (4, 16, 64) bf16) under the FLOP pass and the
    ledger, in a GPU dry run or for real on the CPU: (Flops, {(op, phase): OpCost}, Memory, log)."""
    import warnings

    from ccprof.profiler.flops import FlopPass
    from ccprof.profiler.memory import MemoryLedger

    def step():
        device = "cuda" if torch.cuda.is_available() else "cpu"
        m = _NormNet(64, norm_dtype).to(device)
        x = torch.randn(4, 16, 64, dtype=torch.bfloat16, device=device)
        fp, led = FlopPass({"": m}), MemoryLedger({"": m}, [], torch.device("cpu"))
        led.start()
        fp.start()
        fp.set_phase("forward")
        y = m(x)
        fp.set_phase("backward")
        led.set_phase("backward")
        y.float().sum().backward()
        flops, ops = fp.stop()
        memory, _ = led.stop()
        rows = {(o.op, o.phase): o for o in ops if o.bytes}       # rows that move bytes (not autocast's what-ifs)
        return flops, rows, memory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # the dtype-mismatch warning of the fp32-weight case
        if not dry:
            return (*step(), None)
        with dry_run(cuda=True) as log:
            out = step()
    return (*out, log)


NORM_COMPOSITE = {"aten.pow", "aten.mean", "aten.rsqrt"}


def test_rms_norm_with_one_dtype_runs_as_cudas_fused_kernel():
    """bf16 input, bf16 weight: CUDA runs aten._fused_rms_norm (layer_norm.cpp rms_norm_symint) and
    saves the bf16 input and an fp32 rstd (derivatives.yaml); the dry run records exactly that."""
    flops, rows, memory, log = _norm_step(torch.bfloat16, dry=True)
    ops = {op for op, _ in rows}
    assert not ops & NORM_COMPOSITE
    fwd, bwd = rows["aten._fused_rms_norm", "forward"], rows["aten._fused_rms_norm_backward", "backward"]
    assert fwd.count == bwd.count == 1 and fwd.modules == bwd.modules == {"norm": 1}
    n, d = 4 * 16, 64                                   # rows, hidden
    # forward reads input (n·d bf16) + weight (d bf16); writes output (n·d bf16) + rstd (n fp32)
    assert (fwd.bytes_read, fwd.bytes_written) == (2 * n * d + 2 * d, 2 * n * d + 4 * n)           # 8,320, 8,448
    # backward reads grad_out, input, rstd, weight; writes grad_input and grad_weight
    assert (bwd.bytes_read, bwd.bytes_written) == (2 * 2 * n * d + 4 * n + 2 * d, 2 * n * d + 2 * d)  # 16,768, 8,320
    assert fwd.out_shapes == [[4, 16, 64], [4, 16, 1]]
    # FLOPs: the two matmuls only (torch's counter gives norms none, fused or not): 2 x 2·n·d·d
    assert flops.per_step == 2 * 2 * n * d * d == 1_048_576
    # saved for backward: the norm's bf16 input (the matmul's output) and its fp32 rstd; the
    # weight is a parameter; the matmul saves x, the script's own input
    assert memory.activations_bytes == 2 * n * d + 4 * n == 8_448
    assert any("aten._fused_rms_norm" in r.what for r in log.records.values())
    # and torch is itself again: a real CPU run decomposes as it always did
    _, real_rows, real_memory, _ = _norm_step(torch.bfloat16, dry=False)
    assert {op for op, _ in real_rows} >= NORM_COMPOSITE and "aten._fused_rms_norm" not in {op for op, _ in real_rows}
    assert real_memory.activations_bytes > memory.activations_bytes


def test_rms_norm_with_an_fp32_weight_keeps_the_composite_as_cuda_does():
    """bf16 input, fp32 weight: torch warns "Mismatch dtype between input and weight" and takes
    rms_norm_composite on CUDA too; the dry run records what a real CPU run records."""
    flops, rows, memory, log = _norm_step(torch.float32, dry=True)
    real_flops, real_rows, real_memory, _ = _norm_step(torch.float32, dry=False)
    assert {op for op, _ in rows} >= NORM_COMPOSITE and not any("_fused_rms_norm" in op for op, _ in rows)
    assert {k: (o.count, o.bytes_read, o.bytes_written) for k, o in rows.items()} == \
        {k: (o.count, o.bytes_read, o.bytes_written) for k, o in real_rows.items()}
    assert flops.per_step == real_flops.per_step
    assert memory.activations_bytes == real_memory.activations_bytes
    assert not any("_fused_rms_norm" in r.what for r in log.records.values())


def test_the_fused_rms_norm_stand_in_is_numerically_torchs_on_real_tensors():
    """On real CPU tensors (a stand-in's shadow value) the registered kernels compute the CPU
    composite's values and gradients; autograd keeps what CUDA's node keeps."""
    from ccprof.profiler.dryrun_cuda import fast_paths
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, dtype=torch.float64, requires_grad=True)

    def norm(x, w):
        return torch.nn.functional.rms_norm(x, (8,), w, 1e-5)

    expected = norm(x, w)
    gx, gw = torch.autograd.grad(expected.pow(2).sum(), (x, w))
    assert type(expected.grad_fn).__name__ != "FusedRmsNormBackward0"
    with fast_paths():
        y = norm(x, w)
        node = y.grad_fn
        assert type(node).__name__ == "FusedRmsNormBackward0"
        assert node._saved_input is x and node._saved_weight is w and node._saved_result1.shape == (3, 5, 1)
        torch.testing.assert_close(y, expected)
        fx, fw = torch.autograd.grad(y.pow(2).sum(), (x, w))
        torch.testing.assert_close((fx, fw), (gx, gw))
        assert torch.autograd.gradcheck(norm, (x, w))
        # bf16 keeps an fp32 rstd, as CUDA's kernel does
        _, rstd = torch.ops.aten._fused_rms_norm(x.detach().bfloat16(), [8], w.detach().bfloat16(), 1e-5)
        assert rstd.dtype == torch.float32
        # torch's own condition still holds: a channels-last input keeps the composite, as on CUDA
        img = torch.randn(2, 3, 4, 4, requires_grad=True).to(memory_format=torch.channels_last)
        assert type(torch.nn.functional.rms_norm(img, (4,)).grad_fn).__name__ != "FusedRmsNormBackward0"
    assert type(norm(x, w).grad_fn).__name__ != "FusedRmsNormBackward0"
