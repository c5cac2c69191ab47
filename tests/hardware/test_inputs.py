"""StepInputs: what the cost model reads of a profile, built once; what-ifs edit it, not the Profile."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from ccprof.artefacts.profile import DataInfo, EvalWork, HostInfo, OpCost, Profile, Steps
from ccprof.hardware import cost_step, load_catalog, policy_for, project, step_inputs
from ccprof.hardware.edits import bigger_batch, scale_batch, with_workers
from ccprof.hardware.inputs import StepInputs
from ccprof.hardware.projection import eval_s_for

FIXTURES = Path(__file__).parents[1] / "fixtures"
CAT = load_catalog(user=False)
A100 = CAT["a100-80gb"]
MM = OpCost("aten.mm", count=4, flops=2 * 512 * 768 * 3072 * 4, bytes_read=4 * 4 * (512 * 768 + 768 * 3072),
            bytes_written=4 * 4 * 512 * 3072, phase="forward", shapes=[[512, 768], [768, 3072]],
            out_shapes=[[512, 3072]], fixed=[1])


def _profile() -> Profile:
    return Profile(ops=[MM, dataclasses.replace(MM, phase="backward")], host=HostInfo(opcodes={"forward": 10_000}),
                   data=DataInfo(batch_s=0.004, batch_s_lo=0.003, batch_s_hi=0.005, num_workers=1,
                                 batch_bytes=1 << 20, batches_per_step=1.0),
                   steps=Steps(micro_batches=1))


def test_same_numbers_from_profile_or_inputs():
    p = Profile.from_json(FIXTURES / "profile_sample.json")
    inputs = step_inputs(p)
    assert step_inputs(inputs) is inputs                     # built once, passed through
    assert cost_step(inputs, A100) == cost_step(p, A100)
    assert project(inputs, CAT) == project(p, CAT)
    assert policy_for(inputs, A100) == policy_for(p, A100)


def test_inputs_resolve_the_older_module_call_counter():
    old = Profile(counters={"module_calls_per_step": 12})
    assert step_inputs(old).host.module_calls_per_step == 12
    assert step_inputs(Profile(host=HostInfo(module_calls_per_step=5))).host.module_calls_per_step == 5


def test_with_workers_edits_inputs_as_a_profile_copy_would():
    p = _profile()
    by_profile = cost_step(dataclasses.replace(p, data=dataclasses.replace(p.data, num_workers=8)), A100)
    assert cost_step(with_workers(step_inputs(p), 8), A100) == by_profile


def test_bigger_batch_edits_ops_and_the_batch():
    p = _profile()
    k = 2.0
    p = dataclasses.replace(p, data=dataclasses.replace(p.data, batch_s_lo=p.data.batch_s,
                                                        batch_s_hi=p.data.batch_s * 1.2))
    bigger = dataclasses.replace(p, ops=scale_batch(p.ops, k),
                                 data=dataclasses.replace(p.data, batch_s=p.data.batch_s * k,
                                                          batch_s_lo=p.data.batch_s * k,
                                                          batch_s_hi=p.data.batch_s * 1.2 * k,
                                                          batch_bytes=int(p.data.batch_bytes * k)))
    edited = bigger_batch(step_inputs(p), k)
    assert edited.data.batch_s_hi == pytest.approx(p.data.batch_s_hi * k)   # the band scales with the batch
    assert edited.ops[0].shapes[0] == [1024, 768]           # the tokens of x @ W^T grow
    assert cost_step(edited, A100) == cost_step(bigger, A100)


def test_eval_step_is_the_episode_alone():
    ev = EvalWork(ops=[MM], module_calls=3, ops_flops_frac=0.5)
    p = dataclasses.replace(_profile(), eval=ev, fusion={"forward": {"gaps": 1, "bytes": 1, "fused_bytes": 1}})
    episode = step_inputs(p).eval_step()
    assert episode.ops == (MM,) and episode.eval is None and episode.model.fusion == {}
    assert episode.host.module_calls_per_step == 3
    # one episode = its forward costed without a data wait, over the share of FLOPs its rows hold
    assert eval_s_for(p, A100) == pytest.approx(cost_step(episode, A100, data=False).step_s / 0.5)
    assert StepInputs().eval_step() is None


def test_cost_model_modules_read_a_profile_only_through_step_inputs():
    """step/translate/host/projection: a ``profile`` argument is only ever handed to step_inputs
    (or passed on whole); no attribute of it is read."""
    root = Path(__file__).parents[2] / "ccprof" / "hardware"
    for name in ("step.py", "translate.py", "host.py", "projection.py"):
        tree = ast.parse((root / name).read_text())
        reads = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                 and isinstance(n.value, ast.Name) and n.value.id == "profile"]
        assert not reads, f"{name} reads profile.{reads[0]}: read it from StepInputs"


def test_what_the_script_turns_on_only_on_cuda_is_in_the_gpu_policy():
    """issue 20: a CPU run took the CPU branch of `fused=use_fused` and `enabled=device_type == "cuda"`;
    the target GPU takes the other, and the cost model's baseline must too."""
    from ccprof.artefacts.profile import OptimizerInfo, OptimizerSection, StaticFacts
    opt = OptimizerSection([OptimizerInfo(class_="AdamW", param_count=100, fused=False)])
    plain = dataclasses.replace(_profile(), optimizer=opt)
    assert (policy_for(plain, A100).optimizer, policy_for(plain, A100).autocast) == ("foreach", None)
    on_cuda = dataclasses.replace(plain, static=StaticFacts(on_cuda={"fused_optimizer": "`AdamW(..., fused=f)`",
                                                                     "autocast": "`torch.autocast(...)`"}))
    pol = policy_for(on_cuda, A100)
    assert (pol.optimizer, pol.autocast) == ("fused", "float16")
    # a run on CUDA shows what the GPU does: the measured settings stand
    on_gpu = dataclasses.replace(on_cuda, device=dataclasses.replace(on_cuda.device, type="cuda"))
    assert (policy_for(on_gpu, A100).optimizer, policy_for(on_gpu, A100).autocast) == ("foreach", None)
