"""`ccprof advise PROFILE` keeps the GPU, price and run size the profile was costed with unless the
user names another, and says which it kept (issue 20: `--total-steps N` used to switch GPU and price)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from ccprof import api
from ccprof.cli import cli
from ccprof.hardware import attach
from tests.helpers.profiles import gpt_plain


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("readvise") / "profile.json"
    attach(gpt_plain(), gpu="l4", price_usd=5.0, total_steps=1234).to_json(path)
    return path


def test_total_steps_keeps_gpu_and_price(saved):
    p, advice = api.readvise(saved, total_steps=100)
    assert (p.cost.gpu, p.cost.usd_per_hour, p.cost.price_source, p.cost.run_steps) == ("l4", 5.0, "--price", 100)
    assert {a.details.get("gpu") for a in advice.advice} == {"l4"}


def test_another_gpu_keeps_the_run_size_and_takes_its_own_price(saved):
    p, _ = api.readvise(saved, gpu="a100-80gb")
    assert p.cost.gpu == "a100-80gb" and p.cost.price_source != "--price"     # 5.0 was L4's price
    assert (p.cost.run_steps, p.cost.run_steps_source) == (1234, "--total-steps 1234")


def test_price_override_on_the_same_gpu(saved):
    p, _ = api.readvise(saved, price_usd=2.0)
    assert (p.cost.gpu, p.cost.usd_per_hour, p.cost.run_steps) == ("l4", 2.0, 1234)


def test_the_command_says_what_it_kept(saved, tmp_path):
    out = tmp_path / "advice.json"
    r = CliRunner().invoke(cli, ["advise", str(saved), "--total-steps", "100", "-o", str(out)])
    assert r.exit_code == 0, r.output
    line = r.output.splitlines()[0]
    assert line.startswith("Priced on NVIDIA L4 24GB at $5.00/GPU-hour (--price), 100 steps (--total-steps 100)")
    assert "kept from the profile: GPU, price" in line and "run size" not in line.split("kept")[1]


def test_a_gpu_the_catalog_lacks_is_an_error_not_a_switch(saved, tmp_path):
    import json
    data = json.loads(saved.read_text())
    data["cost"]["gpu"] = "my-private-gpu"
    odd = tmp_path / "profile.json"
    odd.write_text(json.dumps(data))
    with pytest.raises(api.UsageError, match="my-private-gpu.*--catalog"):
        api.readvise(odd, total_steps=100)
