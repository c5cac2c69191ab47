"""The lora codemod, before -> after: peft around the model, its options, the Hugging Face task type."""
from __future__ import annotations

from tests.helpers.codemod import CUSTOM, HF, check, rewrite


def test_lora_custom_targets_linear_attributes_and_keeps_head_trainable():
    after = CUSTOM.replace("import torch\nfrom torch import nn\n",
                           "import torch\nfrom torch import nn\nfrom peft import LoraConfig, get_peft_model\n").replace(
        "model = Net()\n", "model = Net()\nmodel = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, "
        'target_modules="all-linear", modules_to_save=["head"]))\n')
    check(CUSTOM, after, "lora", lora_rank=4)


def test_lora_options_and_hf_task_type():
    out = rewrite(CUSTOM, "lora", lora_targets="layers.0,layers.1").source
    assert 'target_modules=["layers.0", "layers.1"]' in out
    hf = rewrite(HF, "lora").source
    assert ('model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, '
            'target_modules="all-linear", task_type="CAUSAL_LM"))\ntrainer = Trainer(') in hf
