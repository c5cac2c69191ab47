from dataclasses import replace

import pytest
import torch

from ccprof.advisors import AdviceContext, advise_one
from ccprof.advisors.data_scan import scan_dataset
from ccprof.artefacts.fingerprint import fingerprint
from ccprof.artefacts.profile import StaticFacts
from tests.helpers.profiles import hand_profile, llama_plain


class Tokens(torch.utils.data.Dataset):
    """20 sequences: 0-9 unique, 10-14 exact copies of 0-4, 15-19 copies of 5-9 with one token changed."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        base = [torch.randint(0, 1000, (64,), generator=g) for _ in range(10)]
        near = []
        for t in base[5:]:
            t = t.clone()
            t[0] = (t[0] + 1) % 1000
            near.append(t)
        self.items = base + [t.clone() for t in base[:5]] + near

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return {"input_ids": self.items[i]}


def test_scan_dataset_exact_and_near():
    seen = []
    r = scan_dataset(Tokens(), progress=lambda done, total: seen.append((done, total)))
    assert r["examples"] == 20 and r["exact_duplicates"] == 5
    assert r["duplicate_frac"] == pytest.approx(0.25)
    assert r["near_duplicates"] == 10 and r["near_duplicate_frac"] == pytest.approx(0.5)
    assert r["token_inputs"] and r["scope"] == "dataset" and seen[-1] == (20, 20)
    assert fingerprint({"a": torch.ones(2)}) == fingerprint({"a": torch.ones(2)})


def test_formula_scan_replaces_sampled():
    p = hand_profile(data=replace(hand_profile().data, duplicate_frac=0.5, fingerprints=["x"] * 4))
    a = advise_one("data_curation", p, AdviceContext(scan={"examples": 1000, "duplicate_frac": 0.1,
                                                           "near_duplicate_frac": 0.2}))
    # scan wins: 20% of every epoch -> 20% of the $10 run
    assert a.projected.time_saved_frac == pytest.approx(0.2) and a.projected.usd_saved == pytest.approx(2.0)
    assert a.details["scope"] == "dataset" and a.confidence == "medium"


def test_fires_on_sampled_duplicates():
    p = replace(llama_plain(), data=replace(llama_plain().data, duplicate_frac=0.25, fingerprints=["a", "a", "b", "c"]))
    a = advise_one("data_curation", p)
    assert a.status == "recommended" and a.confidence == "low" and "--scan-data" in a.rationale


def test_not_applicable_without_fingerprints_or_duplicates():
    assert "--scan-data" in advise_one("data_curation", llama_plain()).rationale
    p = replace(llama_plain(), data=replace(llama_plain().data, duplicate_frac=0.0, fingerprints=["a", "b"]))
    assert advise_one("data_curation", p).status == "not_applicable"


def test_already_applied():
    p = replace(llama_plain(), static=StaticFacts(lines={"dedup": 7}))
    assert advise_one("data_curation", p).status == "already_applied"


def test_fires_on_a_real_repetitive_loader():
    from tests.helpers.profiles import gpt_loader_plain
    p = gpt_loader_plain()          # 64 examples, 8 distinct: the sampled fingerprints repeat
    a = advise_one("data_curation", p)
    assert a.status == "recommended" and a.details["scope"] == "sampled"
    assert a.projected.time_saved_frac == pytest.approx(p.data.duplicate_frac, abs=1e-6)
