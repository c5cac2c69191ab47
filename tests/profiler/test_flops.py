"""FlopPass on real tiny models (CPU): analytic counts, attention kernels, op rows, fvcore."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ccprof.profiler.flops import EXTRA_FLOP_FORMULAS, FlopPass
from ccprof.profiler.fvcore_check import fvcore_forward_flops

# ---------------------------------------------------------------------------- models


class _Block(nn.Module):
    """nanoGPT block with explicit attention matmuls (what the 6ND + attention rule counts)."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.fc_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)           # (B, H, T, T)
        mask = torch.ones(t, t, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)                          # (B, T, C)
        x = x + self.proj(y)
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x))))


class _GPT(nn.Module):
    def __init__(self, vocab=64, d=32, heads=4, layers=2, block=16) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(block, d)
        self.blocks = nn.ModuleList(_Block(d, heads) for _ in range(layers))
        self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))


def _cnn():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10),
    )


def _llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, vocab_size=256)
    return LlamaForCausalLM(cfg)


def _train_step(fp, model, opt, loss_fn):
    """One step with the phases told, as the harness does."""
    fp.start()
    fp.set_phase("forward")
    loss = loss_fn(model)
    fp.set_phase("backward")
    loss.backward()
    fp.set_phase("optimizer")
    opt.step()
    opt.zero_grad()
    return fp.stop()


# ---------------------------------------------------------------------------- tests


def test_gpt_block_stack_matches_6nd_plus_attention():
    torch.manual_seed(0)
    vocab, d, heads, layers, t, b = 64, 32, 4, 2, 16, 2
    model = _GPT(vocab, d, heads, layers, t)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    idx = torch.randint(0, vocab, (b, t))
    flops, ops = _train_step(FlopPass({"": model}), model, opt,
                             lambda m: F.cross_entropy(m(idx).flatten(0, 1), idx.flatten()))
    tokens = b * t                                               # 32
    # N = matmul weights: 12·d² per block (qkv 3d², proj d², fc 4d², fc_proj 4d²) + head V·d
    n = layers * 12 * d * d + vocab * d                          # 2·12288 + 2048 = 26,624
    # Kaplan: 6·N·tokens; PaLM/nanoGPT attention: 12·L·d·T per token (QK^T and AV, fwd+bwd)
    analytic = 6 * n * tokens + 12 * layers * d * t * tokens     # 5,111,808 + 393,216 = 5,505,024
    assert abs(flops.per_step - analytic) / analytic < 0.02
    assert flops.per_step == analytic                           # every matmul is counted exactly
    assert flops.forward == analytic // 3                        # backward = 2 x forward here
    assert flops.backward == 2 * analytic // 3
    assert flops.by_module[""] == flops.per_step - 0             # the loss has no matmuls
    assert flops.by_module["blocks.0"] == flops.by_module["blocks.1"]
    assert flops.by_module["head"] == 6 * vocab * d * tokens
    assert sum(o.flops for o in ops) == flops.per_step


def test_tiny_llama_counts_cpu_attention_kernels():
    torch.manual_seed(0)
    model = _llama()
    opt = torch.optim.AdamW(model.parameters())
    b, s, hidden, layers = 2, 16, 64, 2
    x = torch.randint(0, 256, (b, s))
    fp = FlopPass({"": model})
    flops, ops = _train_step(fp, model, opt, lambda m: m(input_ids=x, labels=x).loss)
    fwd_kernel = "aten._scaled_dot_product_flash_attention_for_cpu"
    # sdpa forward: QK^T and PV, 2·(2·B·H·S·S·Dh) = 4·B·S²·hidden per layer (full matrix)
    assert flops.by_op[fwd_kernel] == layers * 4 * b * s * s * hidden                 # 262,144
    # flash backward: recompute QK^T + 4 gradient matmuls = 10·B·S²·hidden per layer
    assert flops.by_op[fwd_kernel + "_backward"] == layers * 10 * b * s * s * hidden  # 655,360
    linear = layers * (4 * hidden * hidden + 3 * hidden * 128) + 256 * hidden        # 98,304
    assert flops.per_step == 6 * linear * b * s + 14 * layers * b * s * s * hidden    # 19,791,872
    attn = 4 * hidden * hidden
    assert flops.by_module["model.layers.0.self_attn"] == 6 * attn * b * s + 14 * b * s * s * hidden
    # modules called with keywords (HF attention) must leave the tracker in backward
    assert flops.by_module["model.layers.1.self_attn"] == flops.by_module["model.layers.0.self_attn"]
    assert fp.forward_by_module["model.layers.0.self_attn"] == 2 * attn * b * s + 4 * b * s * s * hidden
    assert fp.forward_by_module[""] == flops.forward
    assert {o.phase for o in ops} >= {"forward", "backward", "optimizer"}
    assert sum(o.flops for o in ops if o.phase == "forward") == flops.forward
    assert fp.errors == []


def test_extra_formulas_cover_the_cpu_kernels():
    names = {str(k) for k in EXTRA_FLOP_FORMULAS}
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in names
    assert "aten._scaled_dot_product_flash_attention_for_cpu_backward" in names


def test_cnn_conv_counts_respect_what_needs_grad():
    torch.manual_seed(0)
    model = _cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    flops, ops = _train_step(FlopPass({"": model}), model, opt,
                             lambda m: F.cross_entropy(m(x), y))
    f1 = 2 * (3 * 9) * 8 * (16 * 16) * 4          # conv1: 2·Cin·k²·Cout·H·W·B = 442,368
    f2 = 2 * (8 * 9) * 16 * (8 * 8) * 4           # conv2 after 2x2 pooling   = 589,824
    f3 = 2 * 4 * 16 * 10                           # linear                    = 1,280
    assert flops.forward == f1 + f2 + f3
    # backward: conv1 needs no input gradient (the batch has none), only its weight's
    assert flops.backward == f1 + 2 * f2 + 2 * f3
    assert flops.by_module["0"] == 2 * f1 and flops.by_module["3"] == 3 * f2
    conv_fwd = [o for o in ops if o.op == "aten.convolution" and o.phase == "forward"]
    # one row per shape: the two convolutions, with their input, weight, bias and output shapes
    assert sorted((o.count, o.shapes[0], o.out_shapes[0]) for o in conv_fwd) == [
        (1, [4, 3, 16, 16], [4, 8, 16, 16]), (1, [4, 8, 8, 8], [4, 16, 8, 8])]
    assert all(o.attrs == {"groups": 1, "transposed": False} for o in conv_fwd)


def test_op_rows_bytes_and_views():
    lin = nn.Linear(8, 4, bias=False)
    x = torch.randn(2, 8)
    fp = FlopPass({"": lin})
    fp.start()
    lin(x).sum().backward()
    flops, ops = fp.stop()
    real = [o for o in ops if o.autocast != "cast"]           # the rest are casts autocast would add
    rows = {(o.op, o.dtype, o.phase): o for o in real}
    assert len(rows) == len(real)                             # one row per op, dtype, phase and shapes here
    mm = rows[("aten.mm", "float32", "forward")]
    assert (mm.shapes, mm.out_shapes, mm.fixed) == ([[2, 8], [8, 4]], [[2, 4]], [1])   # W^T is the parameter
    assert (mm.count, mm.flops) == (1, 2 * 2 * 8 * 4)
    assert mm.bytes_read == 2 * 8 * 4 + 8 * 4 * 4                 # x and W^T (a view of W)
    assert mm.bytes_written == 2 * 4 * 4
    assert not any(o.op in ("aten.t", "aten.view", "aten.transpose", "aten.detach") for o in ops)
    # no phase was told: autograd's engine work is backward, the rest forward
    assert flops.forward == flops.backward == 2 * 2 * 8 * 4       # dW only; x needs no grad
    assert rows[("aten.mm", "float32", "backward")].count == 1


def test_bf16_dtype_and_several_roots():
    student = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2)).to(torch.bfloat16)
    teacher = nn.Sequential(nn.Linear(8, 2)).to(torch.bfloat16)
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    fp = FlopPass({"student": student, "teacher": teacher})
    fp.start()
    with torch.no_grad():
        t = teacher(x)
    (student(x) - t).float().square().mean().backward()
    flops, ops = fp.stop()
    assert flops.by_module["teacher"] == flops.by_module["teacher.0"] == 2 * 4 * 8 * 2
    assert flops.by_module["student.0"] == 2 * 4 * 8 * 8 * 2      # fwd + dW (x needs no grad)
    assert "0" not in flops.by_module
    assert {o.dtype for o in ops if o.flops} == {"bfloat16"}


def test_start_stop_misuse():
    fp = FlopPass({"": nn.Linear(2, 2)})
    with pytest.raises(RuntimeError):
        fp.stop()
    fp.start()
    with pytest.raises(RuntimeError):
        fp.start()
    with pytest.raises(ValueError):
        fp.set_phase("warmup")
    fp.set_phase("data")                       # the DataLoader's own work keeps its phase (its batch time prices it)
    torch.ones(3) * 2
    _, ops = fp.stop()
    assert {o.phase for o in ops} == {"data"}


def test_fvcore_agrees_on_traceable_models():
    torch.manual_seed(0)
    cnn, x = _cnn(), torch.randn(4, 3, 16, 16)
    fp = FlopPass({"": cnn})
    fp.start()
    cnn(x).sum().backward()
    flops, _ = fp.stop()
    count, note = fvcore_forward_flops(cnn, (x,), {})
    assert note is None and count == flops.forward

    gpt, idx = _GPT(), torch.randint(0, 64, (2, 16))
    fp = FlopPass({"": gpt})
    fp.start()
    gpt(idx).sum().backward()
    flops, _ = fp.stop()
    assert fvcore_forward_flops(gpt, (idx,), {}) == (flops.forward, None)


def test_fvcore_says_why_for_hf_llama():
    model = _llama()
    x = torch.randint(0, 256, (1, 8))
    state = torch.random.get_rng_state()
    count, note = fvcore_forward_flops(model, (x,), {})
    assert count is None
    assert "could not trace LlamaForCausalLM" in note
    assert torch.equal(torch.random.get_rng_state(), state)      # the user's RNG is untouched
    assert model.training


def test_an_op_with_its_own_kernel_is_one_row_not_its_decomposition():
    """FlopCounterMode decomposes ops missing from its registry when they have a
    CompositeImplicitAutograd kernel, even ops with a device kernel of their own: SiLU's backward
    had reached the op rows as sigmoid, fill_, sub_ and muls (eight kernels where the GPU runs one)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.SiLU(), nn.Linear(16, 8), nn.Mish(), nn.BatchNorm1d(8),
                          nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 8)
    flops, ops = _train_step(FlopPass({"": model}), model, opt, lambda m: m(x).sum())
    backward = {o.op: o.count for o in ops if o.phase == "backward"}
    assert backward["aten.silu_backward"] == 1
    assert backward["aten.mish_backward"] == 1
    assert not {"aten.sigmoid", "aten.fill_", "aten.sub_", "aten.tanh", "aten.softplus"} & set(backward)
    # an op with a Python decomposition to its functional twin decomposes as before: the op tables
    # (autocast classes, kernel classes) name the twin, and it is one kernel as well
    forward = {o.op for o in ops if o.phase == "forward"}
    assert "aten._native_batch_norm_legit" in forward and "aten.native_batch_norm" not in forward
    # the matmuls, as before: 6 x rows x weights, less the input gradient x does not need
    assert flops.per_step == 6 * 4 * (8 * 16 + 16 * 8 + 8 * 2) - 2 * 4 * 8 * 16


def test_fake_tensors_device_queries_pass_through_the_kernel_registry():
    """Under a dry run FlopCounterMode sees ``prim.device``, which the dispatcher does not list: the
    registry's kernel lookup must answer no rather than raise (an LSTM's backward aborted the process)."""
    from ccprof.profiler.dryrun import dry_run
    with dry_run():
        model = nn.LSTM(8, 8, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.randn(5, 3, 8)
        flops, ops = _train_step(FlopPass({"": model}), model, opt, lambda m: m(x)[0].sum())
    assert flops.per_step > 0
    assert any(o.phase == "backward" for o in ops)


class _WithLoss(nn.Module):
    """The same MLP with its loss inside the model (as Hugging Face models compute it)."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, x):
        return (self.mlp(x).softmax(-1) * 3.0 + 1.0).sum()


def test_fusion_groups_hold_the_models_ops_and_not_a_loss_outside_it():
    """torch.compile(model) fuses what the model's modules run; a loss written after the model's
    output stays eager, so its ops are in no fusion group (and end the group before them)."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8), nn.GELU())
    x = torch.randn(4, 8)
    outside = FlopPass({"": mlp})
    _train_step(outside, mlp, torch.optim.SGD(mlp.parameters(), lr=0.1),
                lambda m: (m(x).softmax(-1) * 3.0 + 1.0).sum())
    wrapped = _WithLoss(mlp)
    inside = FlopPass({"": wrapped})
    _train_step(inside, wrapped, torch.optim.SGD(wrapped.parameters(), lr=0.1), lambda m: m(x))
    fo, fi = outside.fusion["forward"], inside.fusion["forward"]
    # forward: two GELUs in the model; inside, the last GELU's group also takes softmax, mul, add, sum
    assert fo["ops"] == 2 and fi["ops"] == 6
    assert fo["gaps"] == fi["gaps"] == 2
    assert inside.fusion["backward"]["ops"] > outside.fusion["backward"]["ops"]
