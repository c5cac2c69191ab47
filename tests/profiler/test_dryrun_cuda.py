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
