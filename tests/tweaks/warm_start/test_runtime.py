"""warm_start: vectors loaded into the token embedding, which stops training."""
from __future__ import annotations

import torch

from ccprof.applier.runtime import RunObjects, apply_tweak, apply_warm_start
from ccprof.artefacts.tweaks import WarmStartOptions
from tests.helpers.models import Plain, batch, gpt_loss, tiny_gpt, tiny_llama


def test_loads_vectors_freezes_token_embedding_only():
    model = tiny_gpt()
    x, y = batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gpt_loss(model, x, y).backward()
    opt.step()
    vecs = torch.randn(256, 32)
    r = apply_warm_start(RunObjects(model, [opt]), vectors=vecs)
    assert r.applied and r.details["embeddings"] == ["wte"]
    assert torch.equal(model.wte.weight, vecs)
    assert not model.wte.weight.requires_grad and model.wte.weight.grad is None
    assert model.wte.weight not in opt.state
    assert model.wpe.weight.requires_grad                        # positions keep training
    # 256 x 32 = 8192 fewer trainable elements
    assert r.details["trainable_before"] - r.details["trainable_after"] == 8192
    opt.zero_grad(set_to_none=False)
    gpt_loss(model, x, y).backward()
    opt.step()
    assert torch.equal(model.wte.weight, vecs)                   # frozen through a step
    again = apply_warm_start(RunObjects(model, [opt]), vectors=vecs)
    assert not again.applied and again.already_applied


def test_hf_tied_embedding_is_reported():
    model = tiny_llama(tie_word_embeddings=True)
    r = apply_warm_start(RunObjects(model, []), vectors=torch.randn(256, 64))
    assert r.applied and r.details["embeddings"] == ["model.embed_tokens"]
    assert any("lm_head.weight is frozen too" in c for c in r.changes)
    assert not model.lm_head.weight.requires_grad


def test_cannot_apply_wrong_shape_or_no_embedding():
    r = apply_warm_start(RunObjects(tiny_gpt()), vectors=torch.randn(10, 32))
    assert not r.applied and "shape (10, 32)" in r.reason
    r = apply_warm_start(RunObjects(Plain()))
    assert not r.applied and "no nn.Embedding" in r.reason
    m = tiny_gpt()
    m.wte.weight.requires_grad_(False)
    r = apply_warm_start(RunObjects(m))
    assert not r.applied and r.already_applied


def test_refuses_to_freeze_random_init_without_vectors():
    """A user's report: --verify froze randomly initialised embeddings. Without vectors nothing
    changes and the reason names the table and the option to give."""
    model = tiny_gpt()
    r = apply_warm_start(RunObjects(model, []))
    assert not r.applied and not r.already_applied
    assert "no pretrained vectors for wte (256, 32)" in r.reason and "embeddings_path" in r.reason
    assert model.wte.weight.requires_grad


def test_loads_vectors_from_the_options_path(tmp_path):
    """What --verify passes: the advice's embeddings (token and positions) and --option
    embeddings_path; the vectors go into the token table, the positions keep training."""
    vecs = torch.randn(256, 32)
    torch.save(vecs, tmp_path / "vectors.pt")
    model = tiny_gpt()
    opts = WarmStartOptions(embeddings=["wte", "wpe"], vectors_path=str(tmp_path / "vectors.pt"))
    r = apply_tweak("warm_start", RunObjects(model, []), opts)
    assert r.applied, r.reason
    assert torch.equal(model.wte.weight, vecs) and not model.wte.weight.requires_grad
    assert model.wpe.weight.requires_grad and any("left wpe training" in c for c in r.changes)
    bad = apply_tweak("warm_start", RunObjects(tiny_gpt(), []), WarmStartOptions(vectors_path=str(tmp_path / "none.pt")))
    assert not bad.applied and "cannot load vectors" in bad.reason
