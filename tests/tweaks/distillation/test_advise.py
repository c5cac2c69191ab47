from dataclasses import replace

import pytest

from ccprof.advisors import advise_one
from ccprof.artefacts.profile import ModuleStat, RepeatedBlock
from ccprof.hardware import cost_step, load_catalog
from ccprof.hardware.edits import shrink_blocks
from ccprof.tweaks.distillation.advise import project_distillation
from tests.helpers.profiles import gpt_plain, hand_profile, llama_plain, resnet_plain


def _blocks(pretrained: bool = True, **kw):
    """The hand profile as 4 blocks of 20M parameters and 225 GFLOPs each ($10 for 10,000 steps)."""
    blocks = [ModuleStat(f"layers.{i}", class_="Blk", flops=225_000_000_000) for i in range(4)]
    return hand_profile(model=replace(hand_profile().model, modules=blocks, pretrained=pretrained,
                                      repeated_blocks=[RepeatedBlock("layers", "Blk", 4, 20_000_000,
                                                                     [f"layers.{i}" for i in range(4)])]), **kw)


def test_formula():
    p = _blocks()
    pr = project_distillation(p, 0.5)
    # student drops half of 900e9 block FLOPs: 1e12 - 450e9 = 550e9; + teacher forward 333.3e9
    assert pr["student_flops"] == 550_000_000_000
    assert pr["student_params"] == 60_000_000
    # time: the step re-costed with half the blocks' kernels and the teacher's forward kernels
    spec = load_catalog()["a100-80gb"]
    teacher = [o for o in p.ops if o.phase == "forward"]
    before = cost_step(p, spec).step_s
    after = cost_step(p, spec, ops=shrink_blocks(p.ops, ["layers"], 0.5) + teacher).step_s
    assert pr["time_saved_frac"] == pytest.approx(1 - after / before)
    a = advise_one("distillation", p)          # pretrained: the model it loads is the teacher
    assert a.status == "recommended" and a.confidence == "low" and a.risk == "accuracy"
    assert "accuracy" in a.rationale and "low" in a.rationale
    assert "one_time" not in a.details and a.projected.cost_saved_frac == pytest.approx(pr["time_saved_frac"], abs=1e-6)
    assert any("pretrained model the script loads is the teacher" in x for x in a.assumptions)


def test_from_scratch_the_teachers_training_is_counted_and_outweighs_the_saving():
    # no pretrained weights: the teacher is what this run trains, so its training ($10, the whole run)
    # comes first; the student's step saving (the same as above) cannot pay for it
    p = _blocks(pretrained=False)
    a = advise_one("distillation", p)
    saved = project_distillation(p, 0.5)["time_saved_frac"]
    assert saved > 0.01
    assert a.status == "no_saving"
    assert a.details["one_time"]["run_frac"] == 1.0 and a.details["one_time"]["usd"] == pytest.approx(10.0)
    assert a.details["no_saving"]["cost_saved_frac"] == pytest.approx(saved - 1.0, abs=1e-6)
    assert a.rationale.startswith(f"No saving once its one-time cost is counted: it saves {saved:.0%}"[:60])
    assert "the teacher must be trained first" in a.rationale
    assert a.projected.usd_saved == 0 and a.projected.memory_saved_bytes == 0


def test_no_change_in_time_is_never_recommended():
    # users saw "recommended" next to "no change in time per step": with no op records the step is not
    # re-costed (0.0), and the verdict must say there is nothing to save, even for a pretrained model
    a = advise_one("distillation", _blocks(ops=[]))
    assert "no change in time per step" in a.rationale
    assert a.status == "no_saving" and a.rationale.startswith("No projected saving of the run's GPU cost")


def test_real_llama_gets_an_answer():
    a = advise_one("distillation", llama_plain())       # a Llama built from a config: trained from scratch
    assert a.status == "no_saving" and a.details["blocks"] == 2 and a.details["one_time"]["run_frac"] == 1.0


def test_fires_on_gpt():
    a = advise_one("distillation", gpt_plain())
    assert a.details["student_blocks"] == 2 and a.details["blocks"] == 3


def test_not_applicable_without_blocks():
    p = hand_profile()
    assert advise_one("distillation", p).status == "not_applicable"


def test_already_applied_for_a_student():
    p = llama_plain()
    p = replace(p, model=replace(p.model, roots=["StudentLM"]))
    assert advise_one("distillation", p).status == "already_applied"


def test_the_student_drops_blocks_from_every_resnet_stage():
    """Each stage's first block downsamples (other shapes): all 4 stages' 2 blocks are repeated."""
    a = advise_one("distillation", resnet_plain())
    assert a.details["blocks"] == 8 and a.details["student_blocks"] == 4
    # blocks: layer1 2 x 1,184; layer2 3,680 + 4,672; layer3 14,528 + 18,560; layer4 57,728 + 73,984
    blocks = 2 * 1_184 + 3_680 + 4_672 + 14_528 + 18_560 + 57_728 + 73_984
    assert resnet_plain().model.params == 177_362
    assert a.details["student_params"] == 177_362 - blocks // 2 == 89_602
