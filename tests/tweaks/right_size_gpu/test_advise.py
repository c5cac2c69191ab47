
import pytest

from ccprof.advisors import advise_one
from ccprof.artefacts.profile import Profile
from tests.helpers.paths import FIXTURES
from tests.helpers.profiles import llama_plain, priced

SAMPLE = FIXTURES / "profile_sample.json"


def test_fires_on_real_llama_priced_on_an_h100():
    p = priced(llama_plain(), gpu="h100-sxm")
    a = advise_one("right_size_gpu", p)
    assert a.status == "recommended"
    best = a.details["best"]
    current = next(r for r in a.details["candidates"] + [best] if r["gpu"] == best["gpu"])
    # dollars saved = the H100's run cost minus the cheapest fitting GPU's, both from hardware.right_size
    from ccprof.hardware import load_catalog, right_size
    rows = right_size(p, load_catalog(), total_steps=p.cost.run_steps, projection=p.projection)
    h100 = next(r for r in rows if r["gpu"] == "h100-sxm")
    assert a.projected.usd_saved == pytest.approx(h100["usd_run"] - rows[0]["usd_run"], abs=1e-4)   # stored to 6 digits
    assert current["gpu"] != "h100-sxm"


def test_sample_profile_moves_to_a_cheaper_gpu():
    a = advise_one("right_size_gpu", Profile.from_json(SAMPLE))
    assert a.status == "recommended" and a.details["best"]["gpu"] != "a100-80gb"


def test_not_applicable_without_price():
    assert advise_one("right_size_gpu", llama_plain()).status == "not_applicable"


def test_already_applied_on_the_cheapest():
    p = priced(llama_plain(), gpu="a100-80gb")
    from ccprof.hardware import load_catalog, right_size
    cheapest = right_size(p, load_catalog(), total_steps=p.cost.run_steps, projection=p.projection)[0]["gpu"]
    a = advise_one("right_size_gpu", priced(llama_plain(), gpu=cheapest))
    assert a.status == "already_applied"
