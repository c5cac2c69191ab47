from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from ccprof.advisors._common import gpu_spec
from ccprof.artefacts.profile import Embedding, ModuleStat, RepeatedBlock
from ccprof.hardware import cost_step, load_catalog
from ccprof.hardware.edits import recompute
from ccprof.hardware.projection import memory_fit_for
from ccprof.tweaks.checkpointing.advise import project_checkpointing
from tests.helpers.profiles import as_dry_run, gpt_plain, hand_profile, llama_plain, resnet_plain

MB = 10**6


def test_formula():
    blocks = [ModuleStat(f"layers.{i}", class_="Blk", flops=90_000_000_000, activation_bytes=300 * MB) for i in range(2)]
    p = hand_profile()
    p = replace(p, memory=replace(p.memory, activations_bytes=700 * MB, other_bytes=0),
                model=replace(p.model, modules=blocks,
                              repeated_blocks=[RepeatedBlock("layers", "Blk", 2, 1, ["layers.0", "layers.1"])],
                              hf_config={"hidden_size": 1000}),
                steps=replace(p.steps, tokens_per_step=1000))
    pr = project_checkpointing(p)
    # activations 700 of the 2000 MB peak (35%); boundary = 1000 tokens x 1000 x 4 B = 4 MB;
    # end of forward 700-600+8 = 108 MB; recompute of last block 8 + 300 = 308 MB -> saved 392 MB
    assert pr["boundary_bytes"] == 4 * MB
    assert pr["activations_after_bytes"] == 308 * MB
    assert pr["memory_saved_bytes"] == 392 * MB
    # extra forward: 2 x 90e9 x (1/3) = 60e9 of 1e12
    assert pr["extra_flops_frac"] == pytest.approx(0.06, rel=1e-6)
    # on a 2 GB device the 2000 MB peak is over 90%: checkpointing is needed, and costs time:
    # the step re-costed with the blocks' forward kernels again in backward
    a = advise_one("checkpointing", p, AdviceContext(device_memory_bytes=2000 * MB))
    spec = load_catalog()["a100-80gb"]
    before = cost_step(p, spec).step_s
    after = cost_step(p, spec, ops=recompute(p.ops, ["layers"])).step_s
    assert after > before
    assert a.status == "recommended" and a.projected.time_saved_frac == pytest.approx(1 - after / before, abs=1e-6)
    assert a.projected.usd_saved == pytest.approx(10.0 * (1 - after / before), rel=1e-4)   # $10 run: a cost
    # on an 80 GB A100 it fits: not recommended on its own, the projection kept for the plan
    roomy = advise_one("checkpointing", p)
    assert roomy.status == "not_applicable" and "fits" in roomy.rationale
    assert roomy.details["peak_bytes_after"] == 2000 * MB - 392 * MB


def test_boundary_from_embeddings_without_a_config():
    blocks = [ModuleStat(f"b.{i}", class_="Blk", flops=90_000_000_000, activation_bytes=300 * MB) for i in range(2)]
    p = hand_profile()
    p = replace(p, memory=replace(p.memory, activations_bytes=700 * MB, other_bytes=0),
                model=replace(p.model, modules=blocks, repeated_blocks=[RepeatedBlock("b", "Blk", 2, 1, ["b.0", "b.1"])],
                              embeddings=[Embedding("tok", 100, 1000, 100_000), Embedding("pos", 10, 1000, 10_000)]),
                steps=replace(p.steps, tokens_per_step=1000))
    pr = project_checkpointing(p)
    # no hidden size in a config: the embeddings' dim, 1000 tokens x 1000 x 4 B = 4 MB, as test_formula
    assert pr["boundary_bytes"] == 4 * MB and "tok's dim 1000" in pr["boundary_estimate"]
    assert pr["activations_after_bytes"] == 308 * MB
    # bf16 parameters: the residual stream is bf16 -> 2 MB; autocast alone keeps it fp32
    bf16 = replace(p, precision=replace(p.precision, param_dtype="bfloat16"))
    assert project_checkpointing(bf16)["boundary_bytes"] == 2 * MB
    amp = replace(p, precision=replace(p.precision, autocast=True, autocast_dtype="bfloat16"))
    assert project_checkpointing(amp)["boundary_bytes"] == 4 * MB


def test_fires_on_llama_and_gpt():
    p = llama_plain()
    tight = AdviceContext(device_memory_bytes=p.memory.peak_bytes)     # the peak fills the device
    assert advise_one("checkpointing", p, tight).status == "recommended"
    assert advise_one("checkpointing", p).status == "not_applicable"  # an 80 GB GPU has room
    a = advise_one("checkpointing", gpt_plain())
    assert a.status in ("recommended", "not_applicable") and a.details["blocks"] == 3


def test_not_applicable_below_threshold():
    p = llama_plain()
    p = replace(p, memory=replace(p.memory, activations_bytes=p.memory.peak_bytes // 10))
    assert advise_one("checkpointing", p).status == "not_applicable"


def test_already_applied_on_hf_checkpointing():
    from tests.helpers.profiles import llama, llama_batches, run
    m = llama()
    m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    m.config.use_cache = False
    p = run(m, llama_batches(batch=2, seq=16))
    a = advise_one("checkpointing", p)
    assert a.status == "already_applied", (p.model.gradient_checkpointing, p.static.checkpointing)


def test_every_resnet_stage_is_checkpointed():
    """A stage's first block downsamples: the blocks of all 4 stages are wrapped, not layer1's only."""
    p = resnet_plain()
    pr = project_checkpointing(p)
    assert pr["blocks"] == 8 and sorted(pr["containers"]) == ["layer1", "layer2", "layer3", "layer4"]
    mods = {m.name: m for m in p.model.modules}
    assert pr["block_activation_bytes"] == sum(mods[f"layer{s}.{i}"].activation_bytes
                                               for s in range(1, 5) for i in range(2)) > 0


def test_a_dry_run_that_does_not_fit_is_checkpointed_by_the_reports_rule():
    """The tiny Llama as a dry run on a 520 MiB GPU: the tensors' 8.6 MB peak is under 90% (the old
    budget: "fits, a cost"), but reserved + the CUDA context is 2 MiB over: checkpointing is needed."""
    dry = as_dry_run(llama_plain())
    ctx = AdviceContext(device_memory_bytes=520 * (1 << 20))
    spec = gpu_spec(dry, ctx)
    assert dry.memory.peak_bytes < 0.9 * spec.memory_bytes and not memory_fit_for(dry, spec).fits
    a = advise_one("checkpointing", dry, ctx)
    assert a.status == "recommended" and a.details["memory_fit"] == memory_fit_for(dry, spec).as_dict()
    assert memory_fit_for(dry, spec, a.projected.peak_bytes_after).fits
    assert advise_one("checkpointing", llama_plain(), ctx).status == "not_applicable"
