from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from ccprof.artefacts.profile import Embedding
from tests.helpers.profiles import cnn_plain, hand_profile, llama_plain


def test_formula():
    p = hand_profile(model=replace(hand_profile().model, embeddings=[Embedding("tok", 50_000, 400, 20_000_000)]))
    a = advise_one("warm_start", p, AdviceContext(options={"warm_start": {"run_frac": 0.05}}))
    # 20M params x (4 grad + 8 state) = 240 MB
    assert a.projected.memory_saved_bytes == 240_000_000
    # run 5% + 95% x (the optimizer's share of the step on the A100, from the cost model) x 20M/100M
    from ccprof.hardware import cost_step, load_catalog
    sc = cost_step(p, load_catalog()["a100-80gb"])
    share = sc.phase_s["optimizer"] / sc.step_s
    assert a.details["optimizer_share"] == pytest.approx(share)
    assert a.projected.time_saved_frac == pytest.approx(0.05 + 0.95 * share * 0.2, abs=1e-6)   # rounded to 6 places
    assert a.projected.usd_saved == pytest.approx(10 * (0.05 + 0.95 * share * 0.2), rel=1e-3)
    assert a.confidence == "low" and any("unverified" in s for s in a.assumptions)


def test_fires_on_llama():
    a = advise_one("warm_start", llama_plain())
    assert a.status == "recommended" and "model.embed_tokens" in a.rationale


def test_not_applicable_without_embeddings():
    assert advise_one("warm_start", cnn_plain()).status == "not_applicable"


def test_already_applied_when_frozen():
    from tests.helpers.profiles import llama, llama_batches, run
    m = llama()
    m.model.embed_tokens.weight.requires_grad_(False)
    p = run(m, llama_batches(batch=2, seq=16))
    assert advise_one("warm_start", p).status == "already_applied"


def test_not_applicable_for_embeddings_narrower_than_any_published_vectors():
    """graykode's TextCNN trains 2-d embeddings: no published vectors are that narrow."""
    p = hand_profile(model=replace(hand_profile().model, embeddings=[Embedding("W", 16, 2, 32)]))
    a = advise_one("warm_start", p)
    assert a.status == "not_applicable" and "2-dimensional" in a.rationale and "50-d" in a.rationale
