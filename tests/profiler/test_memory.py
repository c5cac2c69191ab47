"""MemoryLedger and optimizer_section on real tiny models (CPU), checked against exact
arithmetic and against PyTorch's own memory profiler for the same step."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler._memory_profiler import Category, MemoryProfileTimeline

from ccprof.profiler.memory import MemoryLedger, optimizer_section, unique_storage_bytes

CPU = torch.device("cpu")


def _llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, vocab_size=256)
    return LlamaForCausalLM(cfg)


def _cnn():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10),
    )


def _measure(model, opt, step, phases=True):
    led = MemoryLedger({"": model}, [opt], CPU)
    led.start()
    step(led if phases else None)
    return led.stop()


def _reference_activation_bytes(step, batch_bytes: int) -> tuple[int, int]:
    """PyTorch's profiler on the same step: (activation bytes, peak live tensor bytes).

    Activations: what the profiler sees alive on the CPU at the instant backward starts,
    less what it classes as parameters, gradients and optimizer state, less the batch we
    fed in. (Its ACTIVATION category alone is not enough: its INPUT heuristic also claims
    some hidden states of the HF model, e.g. 4 x 64 KiB here.)
    """
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step(None)
    mp = prof._memory_profile()
    t_backward_ns = min(e.start_time_ns for e in mp._op_tree.dfs() if e.name == "test_backward")
    timeline = MemoryProfileTimeline(mp)
    times_us, sizes = timeline._coalesce_timeline("cpu")
    from torch.profiler._memory_profiler import _CATEGORY_TO_INDEX

    at = [s for t, s in zip(times_us, sizes) if t * 1000 < t_backward_ns][-1]
    model_state = sum(at[_CATEGORY_TO_INDEX[c] + 1] for c in
                      (Category.PARAMETER, Category.GRADIENT, Category.OPTIMIZER_STATE))
    # Peak of tensor-backed bytes: kernels' private workspaces (conv backward's, here about
    # 0.5 MiB) are allocations the profiler cannot tie to a tensor, and no dispatch mode sees.
    untyped = _CATEGORY_TO_INDEX[None] + 1
    return sum(at) - model_state - batch_bytes, max(sum(s) - s[untyped] for s in sizes)


def _step_fn(model, opt, loss_fn):
    def step(led):
        if led:
            led.set_phase("forward")
        loss = loss_fn(model)
        if led:
            led.set_phase("backward")
        with torch.profiler.record_function("test_backward"):
            loss.backward()
        if led:
            led.set_phase("optimizer")
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


@pytest.mark.parametrize("which", ["llama", "cnn"])
def test_activations_and_peak_match_torch_profiler(which):
    torch.manual_seed(0)
    if which == "llama":
        model = _llama()
        x = torch.randint(0, 256, (4, 64))
        batch_bytes = 2 * x.numel() * 8                          # input_ids and labels
        loss_fn = lambda m: m(input_ids=x, labels=x.clone()).loss  # noqa: E731
    else:
        model = _cnn()
        x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
        batch_bytes = x.numel() * 4 + y.numel() * 8
        loss_fn = lambda m: F.cross_entropy(m(x), y)               # noqa: E731
    opt = torch.optim.AdamW(model.parameters())
    step = _step_fn(model, opt, loss_fn)
    step(None)                                                    # optimizer state exists
    ref_acts, ref_peak = _reference_activation_bytes(step, batch_bytes)
    memory, by_module = _measure(model, opt, step)
    assert abs(memory.activations_bytes - ref_acts) <= 0.10 * ref_acts
    assert abs(memory.peak_bytes - ref_peak) <= 0.10 * ref_peak
    assert memory.other_bytes == max(0, memory.peak_bytes - memory.params_bytes - memory.grads_bytes
                                     - memory.optimizer_state_bytes - memory.activations_bytes)
    assert by_module[""] <= memory.activations_bytes
    if which == "llama":
        # the rotary cos/sin (1, 64, 16) fp32, shared by all layers, are first saved in layer 0
        assert by_module["model.layers.0"] - by_module["model.layers.1"] == 2 * 64 * 16 * 4
        assert by_module["model"] >= by_module["model.layers.0"] + by_module["model.layers.1"]
    else:
        # conv1 out (BN input), ReLU outputs x2, pooled: 8·16·32·32·4 B each, + BN stats
        assert by_module["1"] >= 8 * 16 * 32 * 32 * 4
        assert by_module.get("0", 0) == 0                    # its input is the batch


def test_params_grads_and_adamw_state_are_exact():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    n = sum(p.numel() for p in model.parameters())               # 220 + 63 = 283
    tensors = len(list(model.parameters()))                      # 4
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(5, 10)
    step = _step_fn(model, opt, lambda m: m(x).square().mean())
    memory, _ = _measure(model, opt, step)                       # first step: state appears
    assert memory.params_bytes == 4 * n
    assert memory.grads_bytes == 4 * n                           # seen although zero_grad ran
    # AdamW: exp_avg + exp_avg_sq in fp32, and one fp32 scalar ``step`` per parameter tensor
    assert memory.optimizer_state_bytes == 2 * 4 * n + 4 * tensors
    section = optimizer_section([opt])
    assert section.state_bytes == 2 * 4 * n + 4 * tensors
    info = section.optimizers[0]
    assert (info.class_, info.param_count, info.steps) == ("AdamW", n, 1)
    assert info.hyperparams["betas"] == [0.9, 0.999]
    json.dumps(info.hyperparams)


def test_sgd_momentum_state_is_one_copy_and_phases_optional():
    model = nn.Linear(16, 16)
    n = 16 * 16 + 16
    opt = torch.optim.SGD([{"params": [model.weight], "lr": 0.1},
                           {"params": [model.bias], "lr": 0.01}], momentum=0.9)
    x = torch.randn(4, 16)
    step = _step_fn(model, opt, lambda m: m(x).sum())
    step(None)
    memory, _ = _measure(model, opt, step, phases=False)
    assert memory.optimizer_state_bytes == 4 * n                 # momentum_buffer
    assert memory.grads_bytes == 4 * n
    hyper = optimizer_section([opt]).optimizers[0].hyperparams
    assert hyper["lr"] == [0.1, 0.01] and hyper["momentum"] == 0.9 and hyper["param_groups"] == 2


class _Views(nn.Module):
    """Saves two views of one activation, and ties its output weight to its input one."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.up = nn.Linear(8, 16, bias=False)
        self.out = nn.Linear(8, 10, bias=False)
        self.out.weight = self.emb.weight                         # tied: one storage

    def forward(self, idx):
        h = self.up(self.emb(idx))                                # (B, 16)
        a, b = h[:, :8], h[:, 8:]                                 # two views of h's storage
        return self.out(a * b)


def test_views_and_tied_weights_are_counted_once():
    w = torch.zeros(4, 4)
    assert unique_storage_bytes([w, w.t(), w[0], w.view(16)])[0] == 64
    model = _Views()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    idx = torch.arange(6)
    led = MemoryLedger({"": model}, [opt], CPU)
    led.start()
    model(idx).sum().backward()
    opt.step()
    memory, by_module = led.stop()
    assert memory.params_bytes == 4 * (10 * 8 + 16 * 8)          # tied weight once
    # saved for backward: emb out (up's input), h (via views a and b, once), a*b (out's input)
    emb_out, h, ab = 6 * 8 * 4, 6 * 16 * 4, 6 * 8 * 4
    assert memory.activations_bytes == emb_out + h + ab
    assert by_module["up"] == emb_out and by_module["out"] == ab


def test_misuse_and_devices():
    led = MemoryLedger({"": nn.Linear(2, 2)}, [], CPU)
    with pytest.raises(RuntimeError):
        led.stop()
    led.start()
    with pytest.raises(RuntimeError):
        led.start()
    with pytest.raises(ValueError):
        led.set_phase("warmup")
    memory, _ = led.stop()
    assert memory.cuda_max_allocated_bytes is None and memory.params_bytes == 24
    # a ledger for another device counts nothing that lives on the CPU
    led = MemoryLedger({"": nn.Linear(2, 2)}, [], torch.device("meta"))
    led.start()
    memory, _ = led.stop()
    assert memory.params_bytes == 0 and memory.peak_bytes == 0


def test_a_storage_resized_in_place_counts_at_its_new_size():
    # untyped_storage().resize_ dispatches no op: FSDP2 frees a block's gathered parameters with it
    model = nn.Linear(4, 4)
    led = MemoryLedger({"": model}, [], CPU)
    led.start()
    base = led._live_bytes
    a = torch.zeros(1000)                       # 4,000 B
    a.untyped_storage().resize_(0)              # freed in place, the tensor kept
    b, c = torch.zeros(1000), torch.zeros(1000)  # 8,000 B while a holds nothing
    del b, c
    a.untyped_storage().resize_(4000)           # a gathered again: 4,000 B
    a.zero_()
    live_bytes = led._live_bytes
    memory, _ = led.stop()
    assert memory.peak_bytes == base + 8000     # (a's dead 4,000 B had counted too: 12,000)
    assert live_bytes == base + 4000
    assert "resize_" not in torch.UntypedStorage.__dict__       # put back


def test_fsdp2_gathered_parameters_leave_the_ledger_when_resharded():
    # 8 blocks of 1 MiB fp32 weights on 8 ranks: rank 0 keeps 1/8 of each. FSDP2 all-gathers a block
    # before its forward and frees it after (storage resize_), so the peak holds a block or two
    # gathered at once, not the whole model gathered (8 MiB): the 64 x A100 70B dry run had counted
    # 131 GiB of gathered bf16 weights, all 80 blocks at once
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from ccprof.profiler.dryrun import dry_run

    block_bytes = 512 * 512 * 4
    with dry_run(cuda=True, world=(8, 1)):
        dist.init_process_group("nccl")
        model = nn.Sequential(*[nn.Linear(512, 512, bias=False) for _ in range(8)]).cuda()
        for block in model:
            fully_shard(block)
        fully_shard(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        led = MemoryLedger({"": model}, [opt], CPU)            # the dry run's GPU is a CPU device underneath
        led.start()
        model(torch.randn(2, 512, device="cuda")).sum().backward()
        opt.step()
        memory, _ = led.stop()
        dist.destroy_process_group()
    assert memory.params_bytes == memory.grads_bytes == 8 * block_bytes // 8
    # at most a block gathered, the next prefetched, a gathered gradient and the reduce-scatter's
    # input: 6,045,704 B; before storage resizes were seen, 13,508,616 B (every block gathered)
    assert memory.peak_bytes < memory.params_bytes + memory.grads_bytes + 5 * block_bytes
    # the gathered weights each matmul saves for its backward are weights, not activations: what
    # the step saved is blocks 1-7's (2, 512) fp32 inputs (block 0's is the batch). Counted as
    # activations the gathered weights had made 7,368,704 B, more than the step's whole peak (the
    # Llama 2 13B no-AC dry run: 110 GB of "activations" under a 90 GB peak)
    assert memory.activations_bytes == 7 * 2 * 512 * 4
    assert memory.activations_bytes + memory.params_bytes + memory.grads_bytes <= memory.peak_bytes


def test_the_ledger_replays_its_allocations_through_the_caching_allocator():
    """reserved_peak_bytes: the step's allocations in order through PyTorch's caching allocator
    rules: whole segments (2 MiB small, 20 MiB or 2 MiB-rounded large), never below the tensors' peak."""
    model = nn.Sequential(nn.Linear(512, 2048), nn.GELU(), nn.Linear(2048, 512))
    opt = torch.optim.AdamW(model.parameters())
    led = MemoryLedger({"": model}, [opt], torch.device("cpu"))
    led.start()
    model(torch.randn(64, 512)).square().mean().backward()
    opt.step()
    memory, _ = led.stop()
    assert memory.reserved_peak_bytes >= memory.peak_bytes > 0
    assert memory.reserved_peak_bytes % (2 << 20) == 0
    # 4 MiB weights each need a 20 MiB large segment of their own or a share of one: far from the peak
    assert memory.reserved_peak_bytes < 4 * memory.peak_bytes


def _ledger_step(model: nn.Module) -> tuple:
    """One forward/backward/AdamW step of ``model`` under a ledger; (Memory, the step's replayed events)."""
    opt = torch.optim.AdamW(model.parameters())
    led = MemoryLedger({"": model}, [opt], torch.device("cpu"))
    led.start()
    model(torch.randn(64, 512)).square().mean().backward()
    opt.step()
    events = list(led._events)
    memory, _ = led.stop()
    return memory, events


def test_the_ledger_replays_under_the_allocator_settings_the_process_has(monkeypatch):
    from ccprof.profiler.allocator import parse_alloc_conf, reserved_peak
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    default, events = _ledger_step(nn.Sequential(nn.Linear(512, 2048), nn.GELU(), nn.Linear(2048, 512)))
    assert default.allocator is None and default.reserved_peak_bytes == reserved_peak(events)[0]
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True,garbage_collection_threshold:0.6")
    memory, events = _ledger_step(nn.Sequential(nn.Linear(512, 2048), nn.GELU(), nn.Linear(2048, 512)))
    conf = memory.allocator
    assert conf.expandable_segments and conf.source == "PYTORCH_CUDA_ALLOC_CONF"
    assert conf.not_replayed == ["garbage_collection_threshold:0.6"]
    assert memory.reserved_peak_bytes == reserved_peak(events, parse_alloc_conf("expandable_segments:True"))[0]
    # expandable segments map whole pages: 2 MiB (small pool) and 20 MiB (large) ones
    assert memory.reserved_peak_bytes % (2 << 20) == 0 and memory.reserved_peak_bytes >= memory.peak_bytes


def test_a_dry_runs_set_allocator_settings_call_is_recorded_not_applied():
    from ccprof.profiler.dryrun import dry_run
    from ccprof.profiler.dryrun_cuda import allocator_calls

    with dry_run(cuda=True):
        model = nn.Sequential(nn.Linear(512, 2048), nn.GELU(), nn.Linear(2048, 512)).cuda()
        torch.cuda.memory._set_allocator_settings("expandable_segments:True")      # a no-op that does not fail
        assert allocator_calls() == [("expandable_segments:True", f"test_memory.py:{_this_line() - 1}")]
        opt = torch.optim.AdamW(model.parameters())
        led = MemoryLedger({"": model}, [opt], CPU)
        led.start()
        model(torch.randn(64, 512, device="cuda")).square().mean().backward()
        opt.step()
        memory, _ = led.stop()
    assert memory.allocator.expandable_segments
    assert memory.allocator.source.startswith("torch.cuda.memory._set_allocator_settings at test_memory.py:")
    assert torch._C._accelerator_setAllocatorSettings.__module__ != "ccprof.profiler.dryrun_cuda"


def _this_line() -> int:
    import inspect
    return inspect.currentframe().f_back.f_lineno
