"""Activation checkpointing re-runs blocks' forwards inside backward: those are recomputations of
a model already seen, not new models (they had shown as extra roots whose weights looked tied)."""
from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ccprof.api import profile_model


def test_checkpointed_blocks_are_not_roots():
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=128)
    model = LlamaForCausalLM(cfg)
    model.gradient_checkpointing_enable()
    model.train()
    g = torch.Generator().manual_seed(0)
    batches = [{"input_ids": (ids := torch.randint(0, 128, (2, 16), generator=g)), "labels": ids} for _ in range(4)]
    p = profile_model(model, torch.optim.AdamW(model.parameters()), batches, None, steps=2, warmup=1)
    assert p.model.roots == ["LlamaForCausalLM"] and p.model.tied_params == []
    assert p.model.params == sum(x.numel() for x in model.parameters())
    assert p.flops.recompute > 0                        # the recomputed forwards are still counted as FLOPs


def test_a_recompute_stopped_early_ends_where_its_forward_stops():
    """Non-reentrant checkpointing stops a block's recomputed forward (by raising inside it) once the
    tensors backward needs are made: the recompute ends there, and the rest of backward is backward
    (it had all counted as recompute, making the model FLOPs the forward's alone)."""
    from torch import nn
    from torch.utils.checkpoint import checkpoint

    from ccprof.profiler.flops import FlopPass

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.up, self.down = nn.Linear(32, 128), nn.Linear(128, 32)

        def forward(self, x):
            return self.down(torch.relu(self.up(x)))

    blocks = nn.ModuleList(Block() for _ in range(4))
    fp = FlopPass({"": blocks})
    fp.start()
    x = torch.randn(16, 32)
    for b in blocks:
        x = checkpoint(b, x, use_reentrant=False)
    fp.set_phase("backward")
    x.sum().backward()
    flops, _ = fp.stop()
    up = 2 * 16 * 32 * 128                  # one block's first Linear: all backward needs recomputed
    assert flops.forward == 4 * 2 * up
    assert flops.recompute == 4 * up
    assert flops.model_per_step == flops.per_step - 4 * up
