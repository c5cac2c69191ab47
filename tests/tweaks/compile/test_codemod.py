"""The compile codemod, before -> after: the model compiled where it is built; the Trainer keyword;
with the run's sites, every trained model, where the run built it."""
from __future__ import annotations

from ccprof.artefacts.profile import CallSite
from tests.helpers.codemod import HF, PLAIN, SCRIPT, check, rewrite, site_at


def test_compile_wraps_the_model_where_it_is_built_and_sets_the_trainer_keyword():
    check(PLAIN, PLAIN.replace("nn.Linear(8, 2))\n", "nn.Linear(8, 2))\nmodel = torch.compile(model)\n"), "compile")
    check(HF, HF.replace("    per_device_train_batch_size=8,\n",
                         "    per_device_train_batch_size=8,\n    torch_compile=True,\n"), "compile")


# ------------------------------------------------ with the run's sites (ccprof apply --from advice.json)

def built(src: str, text: str, name: str, cls: str) -> CallSite:
    """The run's record of a trained root module built at the line of ``text``."""
    return site_at(src, text, "model", cls, name)


MINGPT = """\
import torch
from mingpt.model import GPT
from mingpt.trainer import Trainer

if __name__ == "__main__":
    config = get_config()
    model = GPT(config.model)

    # the optimizer is built in mingpt/trainer.py (model.configure_optimizers)
    trainer = Trainer(config.trainer, model, train_dataset)
    trainer.run()
    torch.save(model.state_dict(), "model.pt")
"""


def test_compile_with_sites_compiles_the_model_where_the_run_built_it_when_the_optimizer_is_elsewhere():
    """minGPT: `model = GPT(config.model)` in the script, the optimizer in mingpt/trainer.py; the
    compiled module forwards `configure_optimizers` to the original, so it goes right after the build."""
    sites = [built(MINGPT, "model = GPT(", "model", "mingpt.model.GPT")]
    result = check(MINGPT, MINGPT.replace("    model = GPT(config.model)\n",
                                          "    model = GPT(config.model)\n    model = torch.compile(model)\n"),
                   "compile", sites=sites)
    assert "line 12: a compiled module's state_dict() keys start with `_orig_mod.`" in result.notes["compile"]
    compile(result.source, "train.py", "exec")
    # without the run's sites the script alone shows no optimizer over the model: today's refusal
    assert "looked for `optimizer = torch.optim" in rewrite(MINGPT, "compile").skipped["compile"]


GAN = """\
import torch
import torch.nn as nn


def train():
    G = nn.Sequential(nn.Linear(4, 8), nn.Tanh(),
                      nn.Linear(8, 4))
    D = nn.Sequential(nn.Linear(4, 1), nn.Sigmoid())
    d_optimizer = torch.optim.SGD(D.parameters(), lr=0.1)
    g_optimizer = torch.optim.SGD(G.parameters(), lr=0.1)
    for step in range(10):
        d_error = D(G(torch.randn(2, 4)).detach()).mean()
        d_error.backward()
        d_optimizer.step()
        g_error = -D(G(torch.randn(2, 4))).mean()
        g_error.backward()
        g_optimizer.step()
"""
GAN_SITES = [built(GAN, "G = nn.Sequential(", "G", "torch.nn.modules.container.Sequential"),
             built(GAN, "D = nn.Sequential(", "D", "torch.nn.modules.container.Sequential")]


def test_compile_with_sites_compiles_every_trained_model_of_a_gan():
    """G and D both train: each is compiled before the optimizer over it."""
    after = GAN.replace("    d_optimizer =", "    D = torch.compile(D)\n    d_optimizer =").replace(
        "    g_optimizer =", "    G = torch.compile(G)\n    g_optimizer =")
    check(GAN, after, "compile", sites=GAN_SITES)
    # without the sites the script alone names one model: the last optimizer's
    assert rewrite(GAN, "compile").source.count("torch.compile") == 1


def test_compile_with_sites_compiles_the_model_a_script_left_eager():
    """A script that compiles G only is not "already applied": D is compiled too."""
    g_only = GAN.replace("    g_optimizer =", "    G = torch.compile(G)\n    g_optimizer =")
    after = g_only.replace("    d_optimizer =", "    D = torch.compile(D)\n    d_optimizer =")
    check(g_only, after, "compile", sites=GAN_SITES)
    # the script alone cannot tell that D trains too
    assert rewrite(g_only, "compile").already_applied == ["compile"]


def test_compile_with_sites_goes_after_the_statements_that_finish_the_model():
    src = """\
import torch
from model import Net

model = Net()
print("built")
model.load_state_dict(torch.load("ckpt.pt"))
model = model.to("cuda")
trainer = Trainer(model)
trainer.fit()
"""
    check(src, src.replace('model = model.to("cuda")\n', 'model = model.to("cuda")\nmodel = torch.compile(model)\n'),
          "compile", sites=[built(src, "model = Net()", "model", "model.Net")])


def test_compile_with_sites_refuses_a_model_built_in_another_file_naming_where():
    site = CallSite("model", cls="mingpt.model.GPT", file="../../mingpt/factory.py", line=12, role="train",
                    stack=[["../../mingpt/factory.py", 12, "build"], [SCRIPT, 7, "<module>"]])
    result = rewrite(MINGPT, "compile", sites=[site])
    why = result.skipped["compile"]
    assert result.applied == [] and result.source == MINGPT
    assert "GPT, built at ../../mingpt/factory.py:12, called from line 7 of this script" in why
    assert "add `model = torch.compile(model)` where GPT is built" in why


def test_compile_with_sites_refuses_a_model_built_inside_a_call_that_returns_something_else():
    """The run saw the model built while `trainer = LibTrainer(cfg)` ran (a library builds it): the
    script's `trainer` is not the model, and compiling it would break the run."""
    src = """\
import torch
from lib import LibTrainer

trainer = LibTrainer(cfg)
trainer.fit()
"""
    result = rewrite(src, "compile", sites=[built(src, "trainer = LibTrainer(", "", "lib.Net")])
    assert result.applied == [] and "the script never uses `trainer` as a model" in result.skipped["compile"]


def test_compile_with_sites_does_not_take_a_trainers_train_call_for_a_model():
    src = """\
import torch
from lib import LibTrainer

trainer = LibTrainer(cfg)
trainer.train()
"""
    result = rewrite(src, "compile", sites=[built(src, "trainer = LibTrainer(", "", "lib.Net")])
    assert result.applied == [] and "never uses `trainer` as a model" in result.skipped["compile"]
