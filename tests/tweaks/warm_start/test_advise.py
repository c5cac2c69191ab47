from dataclasses import replace

import pytest
import torch

from ccprof.advisors import AdviceContext, advise_one
from ccprof.advisors._common import fmt_pct, recost
from ccprof.artefacts.profile import Embedding
from ccprof.hardware.edits import freeze_weights
from tests.helpers.profiles import GPT, cnn_plain, gpt2_toy_plain, gpt_batches, gpt_loss, hand_profile, priced, run


def test_formula():
    p = hand_profile(model=replace(hand_profile().model, embeddings=[Embedding("tok", 50_000, 300, 15_000_000)]))
    ctx = AdviceContext(options={"warm_start": {"run_frac": 0.05}})
    a = advise_one("warm_start", p, ctx)
    # 15M params x (4 grad + 8 state) = 180 MB
    assert a.projected.memory_saved_bytes == 180_000_000
    # run 5% + 95% x the step the cost model projects on the A100 with the optimizer over 85M of 100M
    # parameters (this op list has no embedding op whose gradient would go too)
    step = recost(p, ctx, ops=freeze_weights(p.ops, ["tok"], 0.85)).frac
    assert 0 < step < 1
    assert a.details["step_time_saved_frac"] == pytest.approx(step)
    assert a.projected.time_saved_frac == pytest.approx(0.05 + 0.95 * step, abs=1e-6)   # rounded to 6 places
    assert a.projected.usd_saved == pytest.approx(10 * (0.05 + 0.95 * step), rel=1e-3)
    assert a.confidence == "low" and any("unverified" in s for s in a.assumptions)
    assert any("embeddings_path" in s for s in a.assumptions) and "published 300-d word vectors" in a.rationale


def test_custom_embeddings_need_a_published_width_or_table():
    """A 64-d table of the user's own: no word vectors are 64-d and no checkpoint has its shape;
    a nanoGPT GPT's 50,304 x 768 table (GPT-2's vocabulary padded to a multiple of 64) has GPT-2's."""
    def with_table(n, d):
        return hand_profile(model=replace(hand_profile().model, embeddings=[Embedding("wte", n, d, n * d)]))
    a = advise_one("warm_start", with_table(200_000, 64))
    assert a.status == "not_applicable" and "no published vectors are 64-d" in a.rationale
    a = advise_one("warm_start", with_table(50_304, 768))
    assert a.status == "recommended" and "the input embeddings of openai-community/gpt2" in a.rationale


def test_not_applicable_without_embeddings():
    assert advise_one("warm_start", cnn_plain()).status == "not_applicable"


def test_already_applied_when_frozen():
    from tests.helpers.profiles import llama, llama_batches
    m = llama()
    m.model.embed_tokens.weight.requires_grad_(False)
    p = run(m, llama_batches(batch=2, seq=16))
    assert advise_one("warm_start", p).status == "already_applied"


def test_not_applicable_for_embeddings_narrower_than_any_published_vectors():
    """graykode's TextCNN trains 2-d embeddings: no published vectors are that narrow."""
    p = hand_profile(model=replace(hand_profile().model, embeddings=[Embedding("W", 16, 2, 32)]))
    a = advise_one("warm_start", p)
    assert a.status == "not_applicable" and "2-dimensional" in a.rationale and "50-d" in a.rationale


def test_toy_gpt2_has_no_published_vectors_of_its_shape():
    """A user's report: warm_start recommended for a 2-layer GPT-2 with a 1,024-token vocabulary on
    the strength of published gpt2 weights. No published GPT-2 has a 1,024 x 128 embedding table."""
    a = advise_one("warm_start", priced(gpt2_toy_plain()))
    assert a.status == "not_applicable" and a.projected.usd_saved == 0
    assert "transformer.wte 1,024 x 128" in a.rationale
    assert ("openai-community/gpt2 (hidden size 768, vocabulary 50,257), differs in hidden size 128 "
            "(openai-community/gpt2: 768); vocabulary 1,024 (openai-community/gpt2: 50,257)") in a.rationale
    assert a.sources == ["https://huggingface.co/openai-community/gpt2/blob/main/config.json"]


def test_published_shape_is_recommended_with_its_source():
    """The same family at GPT-2's own widths: its vectors are published."""
    p = gpt2_toy_plain()
    cfg = {**p.model.hf_config, "hidden_size": 768, "n_embd": 768, "vocab_size": 50257}
    embs = [Embedding("transformer.wte", 50257, 768, 50257 * 768), Embedding("transformer.wpe", 64, 768, 64 * 768)]
    p = priced(replace(p, model=replace(p.model, hf_config=cfg, embeddings=embs, params=124_000_000,
                                        trainable_params=124_000_000)))
    a = advise_one("warm_start", p)
    assert a.status == "recommended", a.rationale
    assert "the input embeddings of openai-community/gpt2" in a.rationale
    assert "https://huggingface.co/openai-community/gpt2/blob/main/config.json" in a.sources


@pytest.fixture(scope="module")
def tied_profile():
    """A nanoGPT-style model of the user's own whose head is its token embedding (weight tying)."""
    torch.manual_seed(0)
    model = GPT(vocab=1024, d=100, n=2)                        # 100-d: a GloVe width
    model.head.weight = model.tok.weight
    # 8 x 32 = 256 tokens a step: no activation has a weight's shape (1024 x 100)
    return priced(run(model, gpt_batches(vocab=1024), gpt_loss))


def test_tied_embedding_freezes_the_output_layer_too_and_is_projected(tied_profile):
    """A user's report: warm_start recommended freezing `wte`, tied to the LM head, so the output
    layer froze too and nothing said so. The profile records the tie; the advice says it, with
    the share of parameters, and projects it (the head's weight gradient goes as well)."""
    p = tied_profile
    assert p.model.tied_params == [["tok.weight", "head.weight"]]
    a = advise_one("warm_start", p)
    assert a.status == "recommended", a.rationale
    share = 1024 * 100 / p.model.params                       # one tensor, counted once
    assert a.details["tied"] == {"tok": ["head.weight"]}
    assert (f"tok.weight is the same tensor as head.weight, so freezing the embedding freezes the output layer "
            f"too (102,400 parameters, {fmt_pct(share)} of the model") in a.rationale
    assert any("output layer tied" in s for s in a.assumptions)
    # the head's dW GEMM ([1024, 256] @ [256, 100]) is in the step and the projection removes it
    head_dw = [o for o in p.ops if o.phase == "backward" and o.scope == "head" and o.out_shapes == [[1024, 100]]]
    assert head_dw
    ctx = AdviceContext()
    keep = 1 - (1024 * 100 + 32 * 100) / p.model.trainable_params     # tok and pos stop training
    tied = recost(p, ctx, ops=freeze_weights(p.ops, ["tok", "pos", "head"], keep))
    untied = recost(p, ctx, ops=freeze_weights(p.ops, ["tok", "pos"], keep))
    assert a.details["step_s_after"] == pytest.approx(tied.after.step_s)
    assert tied.after.step_s < untied.after.step_s            # the head's weight gradient is gone too
    assert a.details["step_time_saved_frac"] == pytest.approx(tied.frac)
