"""The warm_start codemod, before -> after: pretrained vectors loaded and frozen before the
optimizer; refused without vectors (freezing random init would fix the embeddings at noise)."""
from __future__ import annotations

from tests.helpers.codemod import CUSTOM, HF, check, rewrite


def test_warm_start_loads_and_freezes_the_named_embedding_before_optimizer():
    out = check(CUSTOM, CUSTOM.replace(
        "model = Net()\n",
        "model = Net()\nmodel.get_submodule('emb').weight.data.copy_(torch.load('emb.pt'))  # pretrained vectors\n"
        "model.get_submodule('emb').weight.requires_grad_(False)  # frozen embeddings\n"),
        "warm_start", embeddings_path="emb.pt", embedding_module="emb")
    assert "tied" in out.notes["warm_start"]
    hf = rewrite(HF, "warm_start", embeddings_path="emb.pt").source
    assert "model.get_input_embeddings().weight.data.copy_(torch.load('emb.pt'))" in hf
    assert "model.get_input_embeddings().weight.requires_grad_(False)" in hf


def test_warm_start_refuses_without_vectors():
    """A user's report: `apply` froze randomly initialised embeddings. Without a vectors file the
    rewrite is refused, naming the option to give."""
    for script in (CUSTOM, HF):
        r = rewrite(script, "warm_start")
        assert r.applied == [] and r.diff == ""
        assert "embeddings_path" in r.skipped["warm_start"] and "noise" in r.skipped["warm_start"]
    r = rewrite(CUSTOM, "warm_start", embeddings_path="emb.pt")      # which table is not known
    assert r.applied == [] and "embedding_module" in r.skipped["warm_start"]
