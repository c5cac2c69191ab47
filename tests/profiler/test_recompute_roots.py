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
