"""batch_size advice the script's data cannot follow (issue 21): a batch made once and fed every
step, one tensor for full-batch training, a corpus whose epoch a larger batch would empty, and a
model input that has no batch dimension. Each style of tests/scripts/fixed_batch.py runs once."""
from __future__ import annotations

import functools

from ccprof.advisors import advise_one
from ccprof.hardware import attach
from ccprof.profiler.runner import run_script
from tests.helpers.paths import SCRIPTS


@functools.lru_cache(maxsize=None)
def _profile(style: str):
    r = run_script(SCRIPTS / "fixed_batch.py", ["--style", style], steps=3, warmup=1, timeout_s=120)
    assert r.exit_code == 0, r.message
    return attach(r.profile, gpu="a100-80gb")


def test_a_batch_made_once_is_full_batch_and_not_a_setting():
    p = _profile("fixed")
    d = p.data
    # the warm-up, FLOP and memory steps hashed: make_batch()'s 6 sentences, every time
    assert d.same_inputs is True and d.input_steps == 3 and d.distinct_samples == 6 and d.input_shape == [6, 3]
    a = advise_one("batch_size", p)
    assert a.status == "not_applicable" and a.options == {}
    assert "Full-batch" in a.rationale and "same 6 samples" in a.rationale
    assert "needs more data, not a setting" in a.rationale and "DataLoader" in a.rationale


def test_one_tensor_every_step_is_full_batch():
    p = _profile("tensor")
    assert p.data.same_inputs is True and p.data.distinct_samples == 64
    a = advise_one("batch_size", p)
    assert a.status == "not_applicable" and "same 64 samples" in a.rationale


def test_fresh_batches_are_not_full_batch():
    p = _profile("fresh")
    d = p.data
    assert d.same_inputs is False and d.distinct_samples == 3 * 6       # 3 hashed steps, 6 rows each
    assert advise_one("batch_size", p).details.get("same_inputs") is None


def test_a_corpus_epoch_caps_the_batch():
    """ids [4, 16] walked by range(0, 16 - 5, 5): 3 steps of 4 rows an epoch, 12 samples; a batch
    above 6 leaves an epoch one step (every step the same slice); at 12 rows of 4 tokens the loop
    is empty and the rewrite never trains."""
    p = _profile("corpus")
    d = p.data
    assert d.same_inputs is False and d.epoch_samples == 12
    assert d.epoch_samples_source.startswith("one epoch of range(0, ids.size(1) - seq_len, seq_len) (fixed_batch.py:")
    a = advise_one("batch_size", p)
    assert a.details["batch_after"] <= 6, a.rationale
    if a.status == "recommended":
        assert "capped at 6, half of the 12 samples one epoch holds" in a.rationale
    else:
        assert a.status == "already_applied" and "more data" in a.rationale


def test_an_epoch_of_random_batches_is_no_finite_epoch():
    """`for epoch in range(50): for it in range(3): x = torch.randint(...)`: 3 steps an epoch, but
    each draws new samples; the count bounds no data, so no epoch caps the batch."""
    p = _profile("iters")
    assert p.data.epoch_samples is None and p.data.same_inputs is False
    assert "capped" not in advise_one("batch_size", p).rationale


def test_an_unbatched_input_has_no_batch_to_grow():
    """A 1-D vector of 4 moments into Linear(4, 2): one sample per forward, not a batch of 4."""
    p = _profile("moments")
    d = p.data
    assert d.unbatched_input and d.input_shape == [4] and d.batch_size == 1 and p.steps.samples_per_step == 1
    a = advise_one("batch_size", p)
    assert a.status == "not_applicable" and "no batch dimension" in a.rationale and "[N, 4]" in a.rationale
