"""The shared helpers themselves: the cached profiles stay cached, the hand profile adds up."""
from __future__ import annotations

import functools

import pytest

from tests.helpers import profiles
from tests.helpers.profiles import hand_profile, llama_plain

BUILDERS = sorted(n for n in vars(profiles) if n.endswith("_plain") and callable(getattr(profiles, n)))


def test_hand_profile_ledger_adds_up():
    p = hand_profile()
    m = p.memory
    assert m.params_bytes + m.grads_bytes + m.optimizer_state_bytes + m.activations_bytes + m.other_bytes == m.peak_bytes


@pytest.mark.parametrize("name", BUILDERS)
def test_every_profile_builder_is_cached(name):
    """A decorator slipped between the cache and the builder once cached the wrong object, and each
    ``llama_plain()`` re-profiled the model (~12 s, ~54 calls)."""
    build = getattr(profiles, name)
    assert build in profiles.CACHED and isinstance(build, functools._lru_cache_wrapper)
    assert build.__wrapped__.__name__ == name


def test_llama_plain_is_profiled_once():
    first = llama_plain()
    hits = llama_plain.cache_info().hits
    assert llama_plain() is first
    assert llama_plain.cache_info().hits == hits + 1 and llama_plain.cache_info().misses == 1
