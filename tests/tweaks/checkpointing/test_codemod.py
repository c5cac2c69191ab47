"""The checkpointing codemod, before -> after: custom repeated blocks and Hugging Face models."""
from __future__ import annotations

from tests.helpers.codemod import CUSTOM, HF, check, rewrite


def test_checkpointing_custom_blocks():
    check(CUSTOM, CUSTOM.replace("from torch import nn\n", "from torch import nn\nimport torch.utils.checkpoint\n").replace(
        "x = layer(x)  # (B, 8)", "x = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False)  # (B, 8)"),
        "checkpointing")


def test_checkpointing_hf_model_and_trainer():
    src = """\
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained("gpt2")
    opt = torch.optim.AdamW(model.parameters())
    """
    out = rewrite(src, "checkpointing").source
    assert ('model = AutoModelForCausalLM.from_pretrained("gpt2")\nmodel.gradient_checkpointing_enable('
            'gradient_checkpointing_kwargs={"use_reentrant": False})\n') in out
    hf = rewrite(HF, "checkpointing").source
    assert "    gradient_checkpointing=True,\n" in hf
