"""The warm_start codemod, before -> after: frozen embeddings before the optimizer, loaded ones for HF."""
from __future__ import annotations

from tests.helpers.codemod import CUSTOM, HF, check, rewrite


def test_warm_start_freezes_embeddings_before_optimizer():
    out = check(CUSTOM, CUSTOM.replace("model = Net()\n", "model = Net()\nfor embedding in model.modules():  # frozen embeddings\n"
                                       "    if isinstance(embedding, torch.nn.Embedding):\n"
                                       "        embedding.weight.requires_grad_(False)\n"), "warm_start")
    assert out.notes
    hf = rewrite(HF, "warm_start", embeddings_path="emb.pt").source
    assert "model.get_input_embeddings().weight.data.copy_(torch.load('emb.pt'))" in hf
