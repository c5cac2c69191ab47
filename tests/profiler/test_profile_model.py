"""profile_model (the notebook API) end to end: the Profile's numbers against arithmetic.

A GPT block stack whose parameter count and FLOPs can be written down by hand.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ccprof import profile_model
from ccprof.artefacts.profile import Profile

D, HEADS, LAYERS, VOCAB, B, T = 64, 4, 3, 128, 4, 32


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D)
        self.qkv = nn.Linear(D, 3 * D, bias=False)
        self.proj = nn.Linear(D, D, bias=False)
        self.ln2 = nn.LayerNorm(D)
        self.fc = nn.Linear(D, 4 * D, bias=False)
        self.out = nn.Linear(4 * D, D, bias=False)

    def forward(self, x):                                     # (B, T, D)
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
        q, k, v = (t.view(B, T, HEADS, D // HEADS).transpose(1, 2) for t in (q, k, v))  # (B, H, T, Dh)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, D))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class TinyGPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, D)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.head = nn.Linear(D, VOCAB, bias=False)

    def forward(self, idx):
        x = self.wte(idx)
        for blk in self.blocks:
            x = blk(x)
        return self.head(x)                                   # (B, T, VOCAB)


def lm_loss(logits, targets):
    return F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))


@pytest.fixture(scope="module")
def profile() -> Profile:
    torch.manual_seed(0)
    model = TinyGPT()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = [(torch.randint(0, VOCAB, (B, T)), torch.randint(0, VOCAB, (B, T))) for _ in range(4)]
    return profile_model(model, opt, batches, lm_loss, steps=3, warmup=1)


def test_counts_are_exact(profile):
    # per block: LN 2*(2D) + qkv 3D*D + proj D*D + fc 4D*D + out 4D*D = 4D + 12D^2
    per_block = 4 * D + 12 * D * D
    n = VOCAB * D + LAYERS * per_block + D * VOCAB
    assert profile.model.params == n == profile.model.trainable_params
    assert profile.memory.params_bytes == 4 * n
    assert profile.memory.grads_bytes == 4 * n
    # AdamW: exp_avg + exp_avg_sq in fp32 = 8 bytes/param, plus one 4-byte `step` per tensor
    n_tensors = len(list(TinyGPT().parameters()))
    assert profile.optimizer.state_bytes == 8 * n + 4 * n_tensors
    assert profile.memory.optimizer_state_bytes == profile.optimizer.state_bytes


def test_flops_match_analytic_count(profile):
    tokens = B * T
    linear_weights = LAYERS * 12 * D * D + D * VOCAB
    # 6 * N * tokens for the matmuls (forward 2, backward 4), FACTS.md (Kaplan et al.)
    dense = 6 * linear_weights * tokens
    # attention: QK^T and AV are 2*B*T*T*D each forward, x3 with backward (PaLM App. B: 12*L*D*T per token)
    attention = 12 * LAYERS * D * T * tokens
    expected = dense + attention
    assert profile.flops.per_step == pytest.approx(expected, rel=0.02)
    assert profile.flops.forward == pytest.approx(expected / 3, rel=0.02)
    assert profile.flops.backward == pytest.approx(2 * expected / 3, rel=0.02)


def test_structure_steps_and_round_trip(profile):
    blocks = profile.model.repeated_blocks
    assert blocks and blocks[0].container == "blocks" and blocks[0].count == LAYERS
    assert [e.name for e in profile.model.embeddings] == ["wte"]
    assert "blocks.0.qkv" in profile.model.linear_names
    # at least the 3 steps asked for (more while the step's spread is not known)
    assert 3 <= profile.steps.measured <= 6 and profile.steps.samples_per_step == B
    assert profile.steps.tokens_per_step == B * T
    assert profile.data.token_inputs and profile.data.seq_len == T
    assert all(math.isfinite(x) for x in profile.steps.loss)
    assert profile.memory.activations_bytes > 0
    assert profile.memory.peak_bytes >= (profile.memory.params_bytes + profile.memory.grads_bytes
                                         + profile.memory.optimizer_state_bytes)
    again = Profile.from_json(profile.to_json())
    assert again == profile


def test_hf_model_without_loss_fn():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, vocab_size=256)
    model = LlamaForCausalLM(cfg)
    ids = torch.randint(0, 256, (2, 16))
    p = profile_model(model, torch.optim.AdamW(model.parameters()), [{"input_ids": ids, "labels": ids}],
                      steps=2, warmup=1)
    assert p.status == "complete"
    assert p.model.hf_model_type == "llama" and not p.model.pretrained
    assert p.model.params == sum(t.numel() for t in model.parameters())
    assert p.flops.by_op.get("aten._scaled_dot_product_flash_attention_for_cpu", 0) > 0 or any(
        "attention" in k for k in p.flops.by_op)


def test_fvcore_cross_check_agrees_on_the_matmuls(profile):
    # fvcore's jit trace has no handle for scaled_dot_product_attention, so it counts the
    # Linear layers only: forward 2 * linear_weights * tokens, i.e. ours minus attention's
    # forward 4 * B * T^2 * D per layer.
    tokens = B * T
    linear_weights = LAYERS * 12 * D * D + D * VOCAB
    assert profile.flops.fvcore_forward == 2 * linear_weights * tokens
    assert profile.flops.forward - profile.flops.fvcore_forward == 4 * B * T * T * D * LAYERS
