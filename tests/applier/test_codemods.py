"""The ``ccprof apply`` codemods together: one codemod per tweak id, several tweaks in one rewrite,
the API's edges (syntax errors, unknown tweaks, nothing to do). Each tweak's own before/after
cases are in tests/tweaks/<id>/test_codemod.py."""
from __future__ import annotations

import pytest

from ccprof.applier.codemods import CODEMODS, ScriptSyntaxError, apply_source, codemod_ids
from tests.helpers.codemod import ALIASED, CUSTOM, HF, PLAIN, rewrite


def test_registry_has_one_codemod_per_tweak_id():
    from ccprof.artefacts.tweaks import TWEAKS

    ids = codemod_ids()
    assert set(ids) == set(CODEMODS)
    assert set(ids) <= set(TWEAKS)
    assert {"mixed_precision", "checkpointing", "lora", "warm_start", "grad_accumulation", "fused_optimizer",
            "tf32", "compile", "dataloader", "early_stopping", "distributed"} <= set(ids)


def test_nothing_to_do_leaves_script_unchanged_with_reason():
    src = "import torch\nx = torch.ones(3)\nprint(x.sum())\n"
    result = rewrite(src, "mixed_precision", "grad_accumulation", "lora", "checkpointing")
    assert result.source == src and result.applied == [] and result.diff == ""
    assert "loss.backward()" in result.skipped["mixed_precision"]
    assert "optimizer" in result.skipped["lora"]


# ---------------------------------------------------------------- several tweaks at once

def test_fused_optimizer_tf32_compile_plain_and_aliased():
    out = rewrite(ALIASED, "fused_optimizer", "tf32", "compile").source
    assert "AdamW(model.parameters(), lr=1e-3, fused=True)" in out
    assert "optim.SGD(model.parameters(), lr=0.1, fused=True)" in out
    assert "torch.backends.cuda.matmul.allow_tf32 = True" in out
    assert "model = torch.compile(model)\nopt = AdamW(" in out
    again = apply_source(out, ["fused_optimizer", "tf32", "compile"])
    assert again.source == out and again.applied == []


def test_hf_trainer_keywords():
    out = rewrite(HF, "fused_optimizer", "compile", "dataloader", "batch_size", batch_size=16).source
    for kw in ('optim="adamw_torch_fused"', "torch_compile=True", "dataloader_num_workers=4",
               "per_device_train_batch_size=16"):
        assert f"    {kw},\n" in out


# ---------------------------------------------------------------- API edges

def test_syntax_error_and_unknown_tweak():
    with pytest.raises(ScriptSyntaxError) as err:
        apply_source("x = (\n", ["tf32"], path="train.py")
    assert err.value.path == "train.py" and err.value.line == 1
    result = apply_source(PLAIN, ["pruning"])
    assert "no codemod" in result.skipped["pruning"] and result.source == PLAIN


def test_stacked_tweaks_keep_comments_and_compile():
    result = rewrite(CUSTOM + PLAIN.split("optimizer = ")[1].split("\n", 1)[1], "checkpointing", "lora",
                     "mixed_precision", "grad_accumulation", "compile", "fused_optimizer", "tf32")
    assert len(result.applied) == 7, result.skipped
    assert "# forward" in result.source and "# (B, 8)" in result.source
    compile(result.source, "<test>", "exec")
    again = apply_source(result.source, result.applied)
    assert again.source == result.source


def test_api_apply_reads_the_script_and_writes_nothing(tmp_path):
    from ccprof import api

    script = tmp_path / "train.py"
    src = ("import torch\n"
           "model = torch.nn.Linear(4, 4)\n"
           "opt = torch.optim.AdamW(model.parameters())\n"
           "for x in [torch.randn(2, 4)]:\n"
           "    loss = model(x).sum()\n"
           "    loss.backward()\n"
           "    opt.step()\n"
           "    opt.zero_grad()\n")
    script.write_text(src)
    result = api.apply(script, ["fused_optimizer"])
    assert result.applied == ["fused_optimizer"] and "fused=True" in result.source
    assert script.read_text() == src and sorted(p.name for p in tmp_path.iterdir()) == ["train.py"]
