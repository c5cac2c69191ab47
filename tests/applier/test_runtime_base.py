"""The runtime appliers' shared helpers: repeated blocks, Linear targets, finding the loss and logits."""
from __future__ import annotations

import torch

from ccprof.applier.runtime._base import (
    find_logits,
    find_loss,
    find_repeated_blocks,
    linear_targets,
    map_tensors,
    replace_loss,
)
from tests.helpers.models import Plain, batch, tiny_gpt, tiny_llama


def test_find_repeated_blocks_custom_and_hf():
    name, cont, names = find_repeated_blocks(tiny_gpt())
    assert name == "blocks" and names == ["0", "1", "2", "3"]
    name, cont, names = find_repeated_blocks(tiny_llama())
    assert name == "model.layers" and len(names) == 2
    assert find_repeated_blocks(Plain()) is None


def test_linear_targets_skip_head():
    t = linear_targets(tiny_gpt(n_layer=2))
    assert "head" not in t and "blocks.0.qkv" in t and len(t) == 8     # 4 Linear x 2 blocks


def test_find_and_replace_loss_in_outputs():
    x, y = batch()
    logits, loss = tiny_gpt()(x, y)
    assert find_loss((logits, loss)) is loss and find_logits((logits, loss)) is logits
    new = replace_loss((logits, loss), loss * 2)
    assert torch.equal(new[1], loss * 2) and new[0] is logits
    out = tiny_llama()(input_ids=x, labels=x)
    assert find_loss(out) is out.loss and find_logits(out) is out.logits
    halved = map_tensors(out, lambda t: t * 0.5)
    assert type(halved) is type(out) and torch.allclose(halved.loss, out.loss * 0.5)
