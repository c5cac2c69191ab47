from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from ccprof.artefacts.profile import Embedding, ModuleStat
from ccprof.profiler.static import static_facts_from_source
from tests.helpers.profiles import cnn_plain, gpt2_toy_plain, hand_profile, llama_plain, priced

# Llama-3.2-1B's widths, as its config.json states them
LLAMA_1B = {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32, "vocab_size": 128256}


def _llama_1b():
    return hand_profile(model=replace(hand_profile().model, class_="LlamaForCausalLM", hf_model_type="llama",
                                      hf_config={"model_type": "llama", **LLAMA_1B}))


def test_formula_budget_fraction():
    a = advise_one("finetune", _llama_1b(), AdviceContext(options={"finetune": {"budget_frac": 0.2}}))
    # saving = 1 - 0.2 of the run; $10 run -> $8
    assert a.status == "recommended", a.rationale
    assert a.projected.time_saved_frac == pytest.approx(0.8)
    assert a.projected.usd_saved == pytest.approx(8.0)
    assert a.details["time_scope"] == "run" and a.details["checkpoint"] == "meta-llama/Llama-3.2-1B"
    assert "20%" in a.rationale and a.assumptions and a.risk == "accuracy"
    assert "meta-llama/Llama-3.2-1B (hidden size 2,048, layers 16, attention heads 32, vocabulary 128,256)" in a.rationale
    assert "https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json" in a.sources
    assert 'from_pretrained("meta-llama/Llama-3.2-1B")' in a.snippet


def test_toy_gpt2_fits_no_published_checkpoint():
    """A user's report: finetune recommended for a toy (2 layers, 1,024-token vocabulary) on the
    strength of 'published gpt2 weights' that cannot fit it. Verdict: not applicable, with the
    closest published GPT-2 and every width that differs."""
    a = advise_one("finetune", priced(gpt2_toy_plain()))
    assert a.status == "not_applicable" and a.projected.usd_saved == 0
    assert a.details["family"] == "gpt2" and a.details["checkpoint"] == "distilbert/distilgpt2"
    assert a.details["differs"] == ["hidden size 128 (distilbert/distilgpt2: 768)", "layers 2 (distilbert/distilgpt2: 6)",
                                    "attention heads 4 (distilbert/distilgpt2: 12)",
                                    "vocabulary 1,024 (distilbert/distilgpt2: 50,257)"]
    assert "no published 'gpt2' checkpoint fits it" in a.rationale
    assert a.sources == ["https://huggingface.co/distilbert/distilgpt2/blob/main/config.json"]


def test_scratch_llama_at_toy_widths_is_not_applicable():
    a = advise_one("finetune", priced(llama_plain()))
    assert a.status == "not_applicable" and a.details["family"] == "llama"
    assert "hidden size 64 (meta-llama/Llama-3.2-1B: 2,048)" in a.rationale


def test_not_applicable_for_unknown_family():
    a = advise_one("finetune", cnn_plain())
    assert a.status == "not_applicable" and a.projected.usd_saved == 0


def test_already_applied_when_loaded_from_checkpoint():
    p = llama_plain()
    p = replace(p, model=replace(p.model, pretrained=True, loaded_from="from_pretrained:tiny"))
    assert advise_one("finetune", p).status == "already_applied"


def test_resnet_blocks_pick_the_published_depth():
    def resnet(block, n):
        mods = [ModuleStat("", "ResNet")] + [ModuleStat(f"layer.{i}", block, depth=2) for i in range(n)]
        return hand_profile(model=replace(hand_profile().model, class_="ResNet", modules=mods))
    a = advise_one("finetune", resnet("Bottleneck", 16))
    assert a.status == "recommended" and a.details["family"] == "resnet" and a.details["checkpoint"] == "resnet50"
    a = advise_one("finetune", resnet("BasicBlock", 4))              # ResNet(BasicBlock, [1, 1, 1, 1])
    assert a.status == "not_applicable" and "residual blocks 4 (resnet18: 8)" in a.rationale


# nanoGPT's way of choosing the weights: a config global that --init_from=... overrides
NANO = """\
init_from = 'scratch'
exec(open('configurator.py').read())
if init_from == 'scratch':
    model = GPT(gptconf)
elif init_from.startswith('gpt2'):
    model = GPT.from_pretrained(init_from, dict(dropout=0.0))
"""


def test_pretrained_load_behind_an_option_is_turned_on_not_written():
    """A user's report: 'matches no pretrained family' for a script that loads GPT-2 under an
    option the run did not use. The static facts of this run (init_from left at 'scratch') hold the
    load as off in this run, with the command line that turns it on; finetune says to turn it on."""
    static = static_facts_from_source(NANO, "train.py", argv=[])
    assert not static.from_pretrained and static.inactive == {"from_pretrained": 6}
    assert static.switches == {"from_pretrained": ["--init_from=gpt2"]}
    p = hand_profile(model=replace(hand_profile().model, class_="GPT",
                                   embeddings=[Embedding("transformer.wte", 50304, 768, 50304 * 768)]), static=static)
    a = advise_one("finetune", p)
    assert a.status == "recommended" and a.details["turn_on"]["command"] == "python train.py --init_from=gpt2"
    assert a.rationale.startswith("Your script already has this (`GPT.from_pretrained(...)` at line 6, behind ")
    assert "turn it on with `python train.py --init_from=gpt2`" in a.rationale
    assert "from scratch, yet the script can load pretrained weights" in a.rationale
    assert "python train.py --init_from=gpt2" in a.snippet and "AutoModelForCausalLM" not in a.snippet
    assert a.projected.time_saved_frac == pytest.approx(5 / 6)
    w = advise_one("warm_start", p)           # the embeddings come with the checkpoint the option loads
    assert w.status == "not_applicable" and w.rationale.startswith("Turn on what you have")
    assert "run it `python train.py --init_from=gpt2`" in w.rationale
