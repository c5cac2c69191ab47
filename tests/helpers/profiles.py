"""Tiny real models, their profiles and a hand-built profile, shared by the advisor tests
(models are built from configs, never downloaded).

Profiling a model takes seconds (the Llama ~12 s on a loaded 2-core machine), so each ``*_plain()``
profile is built once per session by :func:`cached_profile`; tests share the object and must not
change it in place (``dataclasses.replace`` makes a changed copy). ``tests/conftest.py`` checks both
at the end of the session: every builder is still cached, and every profile it built is unchanged.
"""
from __future__ import annotations

import functools
from dataclasses import replace

import torch

from ccprof.api import profile_model
from ccprof.artefacts.profile import (
    Cost,
    Flops,
    Memory,
    ModelInfo,
    ModuleStat,
    OpCost,
    OptimizerInfo,
    OptimizerSection,
    Profile,
    Steps,
)

# builder -> the JSON of the profile it built, when it built it
BUILT: dict[str, str] = {}
CACHED: list = []


def cached_profile(build):
    """``build`` run once per session (an ``lru_cache``), the JSON of its profile kept for the end-of-session check.

    Use it as the only decorator of a builder: a decorator put between it and the function would
    cache the decorator's result instead (that once made every ``llama_plain()`` call re-profile).
    """
    @functools.lru_cache(maxsize=None)
    @functools.wraps(build)
    def cached():
        profile = build()
        BUILT[build.__name__] = profile.to_json()
        return profile
    CACHED.append(cached)
    return cached


LLAMA = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=4, vocab_size=256)
BATCH, SEQ = 8, 64


def llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**LLAMA))


def llama_batches(batch: int = BATCH, seq: int = SEQ):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, LLAMA["vocab_size"], (batch, seq), generator=g)
    return [{"input_ids": ids, "labels": ids}]


def run(model, batches, loss_fn=None, params=None, steps: int = 2, warmup: int = 1):
    params = [p for p in (params or model.parameters()) if p.requires_grad]
    return profile_model(model, torch.optim.AdamW(params), batches, loss_fn, steps=steps, warmup=warmup)


class Autocast(torch.nn.Module):
    """A Hugging Face model whose forward runs under CPU bf16 autocast (mixed precision by hand)."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, **kw):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.m(**kw)


@cached_profile
def llama_plain():
    return run(llama(), llama_batches())


class GPT(torch.nn.Module):
    """A nanoGPT-like model: token + position embeddings, n pre-norm blocks, a head."""

    def __init__(self, vocab=128, d=64, n=3, seq=32):
        super().__init__()
        self.tok = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Embedding(seq, d)
        self.blocks = torch.nn.ModuleList(Block(d) for _ in range(n))
        self.ln = torch.nn.LayerNorm(d)
        self.head = torch.nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x))


class Block(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.attn = torch.nn.MultiheadAttention(d, 4, batch_first=True)
        self.fc1, self.fc2 = torch.nn.Linear(d, 4 * d), torch.nn.Linear(4 * d, d)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x))))


def gpt_loss(logits, y):
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())


def gpt_batches(batch=8, seq=32, vocab=128):
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, vocab, (batch, seq), generator=g)
    return [(x, torch.roll(x, -1, 1))]


class CNN(torch.nn.Module):
    def __init__(self, n=3, c=16):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, c, 3, padding=1)
        self.blocks = torch.nn.ModuleList(torch.nn.Sequential(
            torch.nn.Conv2d(c, c, 3, padding=1), torch.nn.BatchNorm2d(c), torch.nn.ReLU()) for _ in range(n))
        self.fc = torch.nn.Linear(c, 10)

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.fc(x.mean((2, 3)))


def cnn_batches(batch=8):
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(batch, 3, 16, 16, generator=g), torch.randint(0, 10, (batch,), generator=g))]


# ------------------------------------------------------------------- shared helpers

def priced(profile: Profile, gpu: str = "a100-80gb", total_steps: int = 10_000) -> Profile:
    """The profile with the hardware stage's projection and cost attached."""
    from ccprof.hardware import attach
    return attach(profile, gpu=gpu, total_steps=total_steps)


@cached_profile
def gpt_plain():
    return run(GPT(), gpt_batches(), gpt_loss)


@cached_profile
def cnn_plain():
    torch.manual_seed(0)
    return run(CNN(), cnn_batches(), torch.nn.functional.cross_entropy)


@cached_profile
def resnet_plain():
    """torchvision's resnet18 layout, narrow (tests/helpers/models.py), on 4 images of 32 x 32."""
    from tests.helpers.models import resnet18
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g))]
    return run(resnet18(), batches, torch.nn.functional.cross_entropy)


# The hand profile's op list: 10 square Linear layers of 2828 features (8.0M weights each) on
# 2,048 rows (batch 8 x 256), with a ReLU after each, in fp32; per-parameter AdamW on the CPU.
HAND_T, HAND_D, HAND_L = 2048, 2828, 10


def hand_ops() -> list[OpCost]:
    """What the FLOP pass would record for the hand profile's layers (shapes, parameter
    tensors, autocast bytes): 3 x 2 x 2048 x 2828^2 x 10 = 9.83e11 FLOPs a step."""
    t, d, n = HAND_T, HAND_D, HAND_L
    mm = 2 * t * d * d

    def row(op, phase, shapes, out, fixed, flops=0, amp="low", count=n, scope="layers.*"):
        elems = sum(a * b for a, b in shapes) + sum(a * b for a, b in out)
        return OpCost(op, "float32", count, flops * count, 4 * sum(a * b for a, b in shapes) * count,
                      4 * sum(a * b for a, b in out) * count, phase, shapes=[list(x) for x in shapes],
                      out_shapes=[list(x) for x in out], fixed=list(fixed), scope=scope,
                      autocast=amp, autocast_bytes=(2 if amp == "low" else 4) * elems * count)
    ops = [
        row("aten.mm", "forward", [(t, d), (d, d)], [(t, d)], [1], mm),
        row("aten.relu", "forward", [(t, d)], [(t, d)], []),
        row("aten.threshold_backward", "backward", [(t, d), (t, d)], [(t, d)], []),
        row("aten.mm", "backward", [(t, d), (d, d)], [(t, d)], [1], mm),       # dX = dY W
        row("aten.mm", "backward", [(d, t), (t, d)], [(d, d)], [2], mm),       # dW = X^T dY
    ]
    for op, k in (("aten.mul_", 1), ("aten.lerp_", 2), ("aten.addcmul_", 3), ("aten.sqrt", 1),
                  ("aten.div_", 1), ("aten.add_", 1), ("aten.addcdiv_", 3)):
        ops.append(row(op, "optimizer", [(d, d)] * k, [(d, d)], list(range(k + 1)), amp="fp32", scope=""))
    ops.append(OpCost("aten.add_", "float32", n, 0, 8 * n, 4 * n, "optimizer", shapes=[[], []], out_shapes=[[]],
                      autocast="fp32", autocast_bytes=12 * n))
    return ops


def hand_profile(**kw) -> Profile:
    """A hand-built profile: 1 GiB-ish round numbers, every field a test may need, overridable.

    Defaults: 100M params (80M in 10 Linear layers of 8M), AdamW (8 bytes/param state),
    peak 2000 MB = params 400 + grads 400 + optimizer 800 + activations 300 + other 100,
    batch 8, step 1 s (forward 0.3, backward 0.5, optimizer 0.1, other 0.1), 1e12 FLOPs/step
    (forward 1/3), the op list of :func:`hand_ops` (what the cost model re-costs), priced on an
    A100 80GB at $3.60/h for 10,000 steps = $10.
    """
    MB = 10**6
    lins = [ModuleStat(name=f"layers.{i}.fc", class_="Linear", params=8_000_000, trainable_params=8_000_000,
                       flops=60_000_000_000, activation_bytes=20 * MB) for i in range(10)]
    model = ModelInfo(class_="Net", params=100_000_000, trainable_params=100_000_000,
                      param_dtypes={"float32": 100_000_000}, modules=lins,
                      linear_names=[m.name for m in lins])
    base = dict(
        model=model,
        optimizer=OptimizerSection([OptimizerInfo(class_="AdamW", param_count=100_000_000, state_bytes=800 * MB,
                                                  foreach=None, fused=None)], 800 * MB),
        steps=Steps(warmup=1, measured=2, step_s=[1.0, 1.0], samples_per_step=8,
                    phase_s={"data": 0.0, "forward": 0.3, "backward": 0.5, "optimizer": 0.1, "other": 0.1}),
        flops=Flops(per_step=10**12, forward=10**12 // 3, backward=2 * 10**12 // 3, by_op={"aten.mm": 10**12}),
        memory=Memory(peak_bytes=2000 * MB, params_bytes=400 * MB, grads_bytes=400 * MB,
                      optimizer_state_bytes=800 * MB, activations_bytes=300 * MB, other_bytes=100 * MB),
        cost=Cost(gpu="a100-80gb", usd_per_hour=3.6, step_s=1.0, run_steps=10_000, usd_run=10.0),
        ops=hand_ops(),
    )
    base["data"] = replace(Profile().data, batch_size=8)
    base.update(kw)
    return Profile(**base)


class SlowRepeating(torch.utils.data.Dataset):
    """64 token sequences with only 8 distinct ones, each taking 10 ms to load."""

    def __len__(self):
        return 64

    def __getitem__(self, i):
        import time
        time.sleep(0.01)
        g = torch.Generator().manual_seed(i % 8)
        x = torch.randint(0, 128, (32,), generator=g)
        return x, torch.roll(x, -1, 0)


@cached_profile
def gpt_loader_plain():
    """The GPT trained from a DataLoader with no workers over a slow, repetitive dataset."""
    return run(GPT(), torch.utils.data.DataLoader(SlowRepeating(), batch_size=8), gpt_loss)


# A toy GPT-2 (2 layers, 128 wide, a 1,024-token vocabulary): a 'gpt2' model no published GPT-2
# checkpoint fits. Its wte is tied to lm_head, as in every GPT2LMHeadModel. 4 x 16 = 64 tokens a
# step, so no activation has a weight's shape.
GPT2_TOY = dict(n_layer=2, n_embd=128, n_head=4, vocab_size=1024, n_positions=64)


@cached_profile
def gpt2_toy_plain():
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**GPT2_TOY, bos_token_id=0, eos_token_id=0))
    ids = torch.randint(0, GPT2_TOY["vocab_size"], (4, 16), generator=torch.Generator().manual_seed(4))
    return run(model, [{"input_ids": ids, "labels": ids}])


def as_dry_run(profile: Profile) -> Profile:
    """``profile`` read as a one-GPU dry run's. Its memory ledger replayed the step's allocations through
    the caching allocator's rules (``Memory.reserved_peak_bytes``), as a dry run's ledger does; with
    ``dry_run`` set the memory fit takes that reserved peak + NCCL's buffers + the CUDA context against
    the whole GPU (``ccprof.hardware.projection.memory_fit_for``) instead of the tensors' peak against 90%."""
    from ccprof.artefacts.profile import DryRun
    assert profile.memory.reserved_peak_bytes, "the ledger replays every step's allocations"
    return replace(profile, dry_run=DryRun(nproc=1))
