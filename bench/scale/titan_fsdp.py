"""A torchtitan-like Llama 3 pretraining loop under FSDP2, as torchrun runs it: the model written as
torchtitan's torchtitan/models/llama/model.py (late 2024) writes it, wrapped as its
parallelize_llama.py does (activation checkpointing per block, then ``fully_shard`` per block and the
root with a bf16-param / fp32-reduce ``MixedPrecisionPolicy``), AdamW, grad-norm clipping, a fixed
batch x sequence of token ids. bench/scale_accuracy.py dry-runs it with ``--dry-run --nproc N --nnodes M``
at the sizes of torchtitan's published multi-GPU measurements (bench/data/published_scale.toml).

What differs from torchtitan on purpose (plain PyTorch only): rotary embeddings as a real-valued
rotation in fp32 (torchtitan multiplies complex64 tensors in fp32: the same shapes and dtypes), no
data loader (random token ids), no LR schedule, no torch.compile / float8.

``--norm`` is torchtitan's ``norm_type`` (torchtitan/models/norms.py ``build_norm``): ``rmsnorm`` its
``RMSNorm`` class as written there (normalise ``x.float()``, ``type_as(x)``, times the weight: several
elementwise kernels, fp32 copies saved for backward); ``fused_rmsnorm`` its Triton
``TritonFusedRMSNorm`` (one kernel forward, one plus a sum backward; saves the input, weight and a fp32
rstd per row), stood in by ``nn.RMSNorm`` whose CUDA path with matching input and weight dtypes is
ATen's one-kernel ``_fused_rms_norm``, saving the same."""
import argparse
import math
import os
from collections import defaultdict

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--layers", type=int, required=True)
p.add_argument("--hidden", type=int, required=True)
p.add_argument("--intermediate", type=int, required=True)
p.add_argument("--heads", type=int, required=True)
p.add_argument("--kv-heads", type=int, required=True)
p.add_argument("--vocab", type=int, required=True)
p.add_argument("--seq", type=int, required=True, help="tokens per sample")
p.add_argument("--batch", type=int, required=True, help="local batch: samples per step on this GPU")
p.add_argument("--ac", choices=["none", "full", "selective-op"], default="none",
               help="torchtitan's activation_checkpoint mode (selective-op: its op policy)")
p.add_argument("--param-dtype", choices=["bf16", "fp32"], default="bf16", help="FSDP2 mixed precision param dtype")
p.add_argument("--reduce-dtype", choices=["bf16", "fp32"], default="fp32", help="FSDP2 mixed precision reduce dtype")
p.add_argument("--norm", choices=["rmsnorm", "fused_rmsnorm"], default="rmsnorm",
               help="torchtitan's norm_type (see the docstring)")
p.add_argument("--steps", type=int, default=100)
args = p.parse_args()
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(B, T, H, D) rotated pairwise in fp32, as torchtitan's apply_rotary_emb (complex64) does."""
    xf = x.float().unflatten(-1, (-1, 2))                     # (B, T, H, D/2, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return out.flatten(-2).type_as(x)


class RMSNorm(nn.Module):
    """torchtitan's RMSNorm (torchtitan/models/norms.py at 9dec370, Dec 2024)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)


def norm(dim: int) -> nn.Module:
    return RMSNorm(dim, eps=1e-5) if args.norm == "rmsnorm" else nn.RMSNorm(dim, eps=1e-5)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_heads: int):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.wq = nn.Linear(dim, heads * self.head_dim, bias=False)
        self.wk = nn.Linear(dim, kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(dim, kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(heads * self.head_dim, dim, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape                                     # (B, T, C)
        q = self.wq(x).view(b, t, self.heads, self.head_dim)
        k = self.wk(x).view(b, t, self.kv_heads, self.head_dim)
        v = self.wv(x).view(b, t, self.kv_heads, self.head_dim)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        rep = self.heads // self.kv_heads                     # torchtitan's repeat_kv: an expanded copy
        k = k[:, :, :, None, :].expand(b, t, self.kv_heads, rep, self.head_dim).reshape(b, t, self.heads, -1)
        v = v[:, :, :, None, :].expand(b, t, self.kv_heads, rep, self.head_dim).reshape(b, t, self.heads, -1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = Attention(args.hidden, args.heads, args.kv_heads)
        self.feed_forward = FeedForward(args.hidden, args.intermediate)
        self.attention_norm = norm(args.hidden)
        self.ffn_norm = norm(args.hidden)

    def forward(self, x, cos, sin):
        h = x + self.attention(self.attention_norm(x), cos, sin)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok_embeddings = nn.Embedding(args.vocab, args.hidden)
        self.layers = nn.ModuleDict({str(i): TransformerBlock() for i in range(args.layers)})
        self.norm = norm(args.hidden)
        self.output = nn.Linear(args.hidden, args.vocab, bias=False)
        head_dim = args.hidden // args.heads                  # rope theta 500000 (Llama 3)
        freqs = 1.0 / (500000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        angles = torch.outer(torch.arange(args.seq).float(), freqs)[None, :, None, :]  # (1, T, 1, D/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, tokens):
        h = self.tok_embeddings(tokens)
        for layer in self.layers.values():
            h = layer(h, self.cos, self.sin)
        return self.output(self.norm(h)).float()              # torchtitan's logits are upcast to fp32


# torchtitan's selective op policy: save mm (all but every second one) and attention's outputs.
# Its list names the CUDA attention kernels; where the tensors live on the CPU (gloo, or ccprof's dry
# run, whose GPU is a CPU device underneath) SDPA dispatches to the CPU flash kernel, saved likewise.
_SAVE = {torch.ops.aten.mm.default, torch.ops.aten._scaled_dot_product_efficient_attention.default,
         torch.ops.aten._scaled_dot_product_flash_attention.default,
         torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
         torch.ops._c10d_functional.reduce_scatter_tensor.default, torch.ops.aten.max.default}


def _op_sac_context():
    from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts
    meta = defaultdict(int)

    def policy(ctx, func, *a, **kw):
        key = f"{'recompute' if ctx.is_recompute else 'forward'}_mm_count"
        if func == torch.ops.aten.mm.default:
            meta[key] += 1
        save = func in _SAVE and not (func == torch.ops.aten.mm.default and meta[key] % 2 == 0)
        return CheckpointPolicy.MUST_SAVE if save else CheckpointPolicy.PREFER_RECOMPUTE
    return create_selective_checkpoint_contexts(policy)


dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
rank = dist.get_rank()
device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
if device.type == "cuda":
    torch.cuda.set_device(device)
with torch.device("meta"):                                    # as torchtitan: shard first, then allocate
    model = Transformer()
if args.ac != "none":
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
    for lid, block in list(model.layers.items()):
        kw = {"context_fn": _op_sac_context} if args.ac == "selective-op" else {}
        model.layers[lid] = checkpoint_wrapper(block, preserve_rng_state=False, **kw)

from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard  # noqa: E402

mp = MixedPrecisionPolicy(param_dtype=DTYPES[args.param_dtype], reduce_dtype=DTYPES[args.reduce_dtype])
for lid, block in model.layers.items():
    # torchtitan keeps the last block unsharded after forward: backward needs it at once
    fully_shard(block, mp_policy=mp, reshard_after_forward=int(lid) < args.layers - 1)
fully_shard(model, mp_policy=mp)
model.to_empty(device=device)
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)  # torchtitan: trunc_normal_ (values do not matter here)
        elif isinstance(m, (nn.RMSNorm, RMSNorm)):
            m.reset_parameters()
    head_dim = args.hidden // args.heads
    freqs = 1.0 / (500000.0 ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    angles = torch.outer(torch.arange(args.seq, device=device).float(), freqs)[None, :, None, :]
    model.cos, model.sin = angles.cos(), angles.sin()

# torchtitan's build_optimizers: AdamW, lr 3e-4, betas (0.9, 0.95), weight decay 0.1, foreach
opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, foreach=True)
model.train()
for step in range(args.steps):
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq), device=device)   # (B, T)
    labels = torch.randint(0, args.vocab, (args.batch, args.seq), device=device)
    pred = model(tokens)                                                            # (B, T, V) fp32
    loss = F.cross_entropy(pred.flatten(0, 1), labels.flatten(0, 1))
    del pred
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0, foreach=True)
    opt.step()
    opt.zero_grad()
    if rank == 0 and step % 10 == 0:
        print(f"step {step} loss {loss.item():.3f} ({math.prod((args.batch, args.seq)):,} tokens)")
dist.destroy_process_group()
