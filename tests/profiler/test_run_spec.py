"""The typed run spec both sides of a run share (issue 12): the parent writes it, the harness
reads it back as the same value, and profile_model describes its run with the same type."""
from __future__ import annotations

import pytest
import torch

from ccprof._serde import ArtefactError
from ccprof.profiler.spec import RunSpec, run_environment


def test_a_spec_round_trips(tmp_path):
    spec = RunSpec(script="train.py", args=["--lr", "3e-4"], steps=4, warmup=1, out=str(tmp_path / "p.json"),
                   tweak=["grad_accumulation"], tweak_options={"grad_accumulation": {"steps": 2}}, seed=0,
                   timeout=60.0, plugins={"apply": "ccprof.applier.runtime"})
    spec.to_json(tmp_path / "spec.json")
    assert RunSpec.from_json(tmp_path / "spec.json") == spec


def test_a_bad_spec_names_its_field(tmp_path):
    (tmp_path / "spec.json").write_text('{"script": "t.py", "steps": 0}')
    with pytest.raises(ArtefactError, match=r"run spec\.steps"):
        RunSpec.from_json(tmp_path / "spec.json")


def test_the_environment_is_described_one_way(tmp_path):
    from ccprof.api import profile_model

    env = run_environment(RunSpec(script="train.py", args=["-x"]), cwd=str(tmp_path))
    assert (env.script, env.argv, env.cwd, env.torch) == ("train.py", ["-x"], str(tmp_path), torch.__version__)
    model = torch.nn.Linear(4, 2)
    p = profile_model(model, torch.optim.SGD(model.parameters(), lr=0.1),
                      [(torch.randn(3, 4), torch.randn(3, 2))], torch.nn.functional.mse_loss, steps=2, warmup=1)
    e = p.environment
    assert e.script == "<profile_model>" and e.torch == torch.__version__ and e.hostname
    assert e.started_at and e.finished_at >= e.started_at
