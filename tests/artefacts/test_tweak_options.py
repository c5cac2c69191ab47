"""Every tweak id through its stages with one set of typed options (issue 12): the advisor's
options -> advice.json -> the runtime applier (--verify) -> the codemod (ccprof apply).

The catalog (ccprof/artefacts/tweaks.py) says which stages an id has; the registries must
agree with it, and an option keeps one name (its field's) everywhere."""
from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import replace

import pytest
import torch

from ccprof.advisors import ADVISORS
from ccprof.applier.codemods import CODEMODS, apply_source, codemod_ids
from ccprof.applier.runtime import RunObjects, apply_tweak
from ccprof.applier.runtime._base import REGISTRY
from ccprof.artefacts.advice import Advice, AdviceSet, ArtefactError
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import TWEAKS, NoOptions, TweakOptions, cli_options, options_for, parse_option, runtime_ids
from tests.helpers.models import SEQ, VOCAB, tiny_gpt
from tests.helpers.paths import ROOT

# one value per option field, of the field's kind, that each stage can take
SAMPLES: dict[str, dict[str, typing.Any]] = {
    "lora": {"rank": 4, "alpha": 12, "dropout": 0.1, "targets": ["qkv", "fc1"]},
    "warm_start": {"embeddings": ["wte"], "vectors_path": "vectors.pt", "embedding_module": "wte", "freeze": True},
    "checkpointing": {"container": "blocks"},
    "mixed_precision": {"dtype": "bf16", "loss_scaling": False},
    "grad_accumulation": {"steps": 3},
    "distillation": {"keep_every": 2, "alpha": 0.4, "temperature": 3.0},
    "pruning": {"method": "ln_structured", "amount": 0.25, "targets": ["blocks.0.fc1", "blocks.1.fc1"]},
    "quantization": {"bits": 4, "group_size": 16},
    "early_stopping": {"patience": 5},
    "compile": {"backend": "eager"},
    "dataloader": {"num_workers": 3, "pin_memory": False, "prefetch_factor": 2},
    "batch_size": {"batch_size": 7},
}


def sample(tweak: str) -> TweakOptions:
    return options_for(tweak, SAMPLES.get(tweak, {}))


def test_the_registries_are_the_catalog():
    assert set(ADVISORS) == set(TWEAKS)
    assert set(REGISTRY) == set(runtime_ids()) == {t for t, i in TWEAKS.items() if i.runtime}
    assert set(CODEMODS) == set(codemod_ids()) == {t for t, i in TWEAKS.items() if i.codemod}
    for t, info in TWEAKS.items():
        assert info.options is NoOptions or info.options.tweak == t, t
        assert info.runtime or info.no_runtime, f"{t}: say why it has no runtime applier"


@pytest.mark.parametrize("tweak", list(TWEAKS))
def test_every_field_has_a_sample_and_a_runtime_keyword(tweak):
    info = TWEAKS[tweak]
    names = {f.name for f in dataclasses.fields(info.options)}
    assert set(SAMPLES.get(tweak, {})) <= names
    o = sample(tweak)
    if not info.runtime:
        return
    params = inspect.signature(REGISTRY[tweak]).parameters
    full = dataclasses.replace(o, **{f.name: o.to_dict().get(f.name, "x") for f in dataclasses.fields(o)})
    for key in full.runtime_kwargs():
        assert key in params, f"{tweak}: the runtime applier has no keyword {key!r}"


@pytest.mark.parametrize("tweak", list(TWEAKS))
def test_options_survive_advice_json(tweak, tmp_path):
    o = sample(tweak)
    advice = AdviceSet(advice=[Advice(tweak=tweak, status="recommended", options=o.to_dict())])
    advice.to_json(tmp_path / "advice.json")
    back = AdviceSet.from_json(tmp_path / "advice.json").advice[0]
    assert back.tweak_options() == o


def test_a_bad_option_in_advice_json_is_named():
    doc = '{"schema": "ccprof.advice/1", "advice": [{"tweak": "tf32"}, {"tweak": "grad_accumulation", ' \
          '"status": "recommended", "options": {"steps": "four"}}]}'
    with pytest.raises(ArtefactError, match=r"advice\[1\]\.options\.steps"):
        AdviceSet.from_json(doc)
    with pytest.raises(ArtefactError, match=r"advice\[0\]\.options\.micro_batches: not an option of grad_accumulation"):
        AdviceSet.from_json('{"schema": "ccprof.advice/1", "advice": [{"tweak": "grad_accumulation", '
                            '"status": "recommended", "options": {"micro_batches": 4}}]}')


def test_cli_keys_and_dotted_names_set_one_field():
    assert parse_option("accumulation_steps=8") == ("grad_accumulation", "steps", 8)
    assert parse_option("grad_accumulation.steps=8") == ("grad_accumulation", "steps", 8)
    assert parse_option("lora.alpha=32") == ("lora", "alpha", 32)
    assert parse_option("pruning.method=2:4") == ("pruning", "method", "2:4")
    assert parse_option("dataloader.pin_memory=no") == ("dataloader", "pin_memory", False)
    for bad, says in [("pruning.method=l3", "l1_unstructured or ln_structured or 2:4"),
                      ("lora.rnk=3", "lora has no option 'rnk'"), ("quantization.bits=2", ">= 4")]:
        with pytest.raises(ValueError, match=says):
            parse_option(bad)
    for key, (tweak, name) in cli_options().items():
        assert name in {f.name for f in dataclasses.fields(TWEAKS[tweak].options)}, key


# ---- the runtime stage applies what the options say ---------------------------------------

def _objs(model):
    idx = torch.randint(0, VOCAB, (6, SEQ))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return RunObjects(model, [opt], example_args=(idx, idx))


RUNTIME_EFFECT = {
    "grad_accumulation": lambda r, m: r.details.get("micro_batches") == 3,
    "lora": lambda r, m: {mod.r["default"] for mod in m.modules() if hasattr(mod, "lora_A")} == {4}
    and sum(1 for mod in m.modules() if hasattr(mod, "lora_A")) == 2 * 2,        # qkv and fc1 of 2 blocks
    "pruning": lambda r, m: "ln_structured" in r.reason and not hasattr(m.blocks[0].qkv, "weight_mask")
    and hasattr(m.blocks[1].fc1, "weight_mask"),
    "distillation": lambda r, m: len(m.blocks) == 1,
    "warm_start": lambda r, m: not m.wte.weight.requires_grad and m.wpe.weight.requires_grad,
    "checkpointing": lambda r, m: r.applied,
    "mixed_precision": lambda r, m: "bfloat16" in " ".join([r.reason, *r.changes]),
}


@pytest.mark.parametrize("tweak", sorted(RUNTIME_EFFECT))
def test_the_runtime_applier_applies_the_options(tweak, tmp_path, monkeypatch):
    model = tiny_gpt(n_layer=2)
    if tweak == "warm_start":               # the vectors its sample's vectors_path names
        monkeypatch.chdir(tmp_path)
        torch.save(torch.randn(VOCAB, model.wte.embedding_dim), "vectors.pt")
    if tweak == "quantization":
        model.requires_grad_(False)
    r = apply_tweak(tweak, _objs(model), sample(tweak))
    assert r.applied, r.reason
    assert RUNTIME_EFFECT[tweak](r, model), (r.reason, r.changes, r.details)


def test_quantization_runs_at_the_projected_bits():
    model = tiny_gpt(n_layer=2)
    for b in model.blocks:
        b.requires_grad_(False)
    r = apply_tweak("quantization", _objs(model), sample("quantization"))
    assert r.applied and ("int4" in r.reason or "4-bit" in r.reason or r.details.get("bits") == 4), r


# ---- the codemod writes what the options say -----------------------------------------------

SCRIPT = (ROOT / "examples" / "gpt_loop.py").read_text(encoding="utf-8")
CNN = (ROOT / "examples" / "cnn.py").read_text(encoding="utf-8")       # a DataLoader, a --batch-size
WRITES = {
    "grad_accumulation": "gradient_accumulation_steps = 3", "lora": "r=4, lora_alpha=12, lora_dropout=0.1",
    "mixed_precision": "bfloat16",
    "dataloader": "prefetch_factor=2", "batch_size": "default=7", "early_stopping": "early_stopping_patience = 5",
    "warm_start": "torch.load('vectors.pt')",
}


@pytest.mark.parametrize("tweak", codemod_ids())
def test_the_codemod_takes_the_options(tweak):
    result = apply_source(CNN if tweak in ("dataloader", "batch_size") else SCRIPT, [tweak],
                          tweak_options={tweak: sample(tweak)})
    if tweak == "dataloader":
        assert "pin_memory=True" not in result.diff          # pin_memory=False: not added
    if tweak in WRITES:
        assert tweak in result.applied, result.skipped
        added = "".join(l[1:] for l in result.diff.splitlines() if l.startswith("+") and not l.startswith("+++"))
        assert WRITES[tweak] in added, result.diff
    else:
        assert tweak in result.applied or tweak in result.skipped


# ---- and the advisors fill them -------------------------------------------------------------

def test_recommended_advice_carries_what_was_projected():
    from ccprof.advisors import AdviceContext
    from ccprof.api import advise, attach_costs

    p = Profile.from_json(ROOT / "tests" / "fixtures" / "profile_sample.json")
    by = advise(attach_costs(p) if p.cost is None else p).by_tweak()
    # batch_size and dataloader project nothing on this device-bound step with no batch time:
    # what is not recommended carries no options (the loop below)
    assert by["batch_size"].status != "recommended" and by["dataloader"].status != "recommended"
    assert by["mixed_precision"].options == {"dtype": "bf16"}
    # its 32,000 x 1,024 embedding table is no published checkpoint's: no vectors, no options
    assert by["warm_start"].status == "not_applicable" and by["warm_start"].options == {}
    # on a device the peak fills, the memory tweaks are needed: recommended, with what they project
    # (LoRA adapts pretrained weights: the sample's model as if loaded from a checkpoint)
    loaded = replace(p, model=replace(p.model, pretrained=True, loaded_from="from_pretrained:sample"))
    tight = advise(attach_costs(loaded) if loaded.cost is None else loaded,
                   AdviceContext(device_memory_bytes=p.memory.peak_bytes)).by_tweak()
    lora = tight["lora"]
    assert lora.status == "recommended"
    assert lora.options["rank"] == lora.details["rank"]
    # peft suffixes, and exactly the projected layers: every q_proj ... of the blocks
    assert set(lora.options["targets"]) == {t.split(".")[-1] for t in lora.details["targets"]}
    for a in by.values():
        options_for(a.tweak, a.options)                         # each one is valid
        if a.status != "recommended":
            assert a.options == {}


def test_an_option_the_rewrite_does_not_write_is_said():
    """LoRA's lr and keep_trainable are --verify's (run time); the codemod has no place for
    them, and says so rather than dropping them silently."""
    result = apply_source(SCRIPT, ["lora"], tweak_options={"lora": options_for("lora", {"rank": 4, "lr": 1e-4})})
    assert "lora" in result.applied, result.skipped
    assert "not written by this rewrite: lora.lr" in result.notes["lora"]
    plain = apply_source(SCRIPT, ["lora"], tweak_options={"lora": options_for("lora", {"rank": 4})})
    assert "not written" not in plain.notes.get("lora", "")
