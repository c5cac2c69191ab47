"""The batch_size codemod with the run's sites (``ccprof apply --from advice.json``): the batch is
changed where the run took it from (an argparse default and the command line that overrode it, a
module global nanoGPT's configurator overrides, a config field, the training loader's literal, a
factory's keyword), refused with the file and line when it is written in another file of the
project, and kept consistent with what the script asserts on it. Sites are built by hand as the
profiler records them (``CallSite``/``Setting``)."""
from __future__ import annotations

import textwrap
from pathlib import Path

from ccprof.applier.codemods import apply_source
from ccprof.artefacts.profile import CallSite, Setting

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
LOADER = "torch.utils.data.dataloader.DataLoader"


def _apply(source: str, sites, argv=None, path="train.py", **options):
    return apply_source(textwrap.dedent(source), ["batch_size"], options=options, sites=sites, argv=argv, path=path)


def _loader(*settings: Setting, file="train.py", line=9, stack=(), role="train") -> CallSite:
    return CallSite("dataloader", LOADER, file, line, "<module>", [list(s) for s in stack], role, "loader",
                    list(settings))


ARGS = """\
import argparse

import torch
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--bs", dest="batch_size", type=int, default=32)
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--max_steps", type=int, default=1000)
args = parser.parse_args()
model = torch.nn.Linear(4, 2)
loader = DataLoader(TensorDataset(torch.randn(256, 4)), batch_size=args.batch_size, shuffle=True)
opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
step = 0
for (x,) in loader:
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
"""


def test_an_argparse_default_the_run_overrode_changes_the_default_and_the_command_line():
    # `python train.py --bs 16 --lr=0.1 --max_steps 1000`: batch 16 -> 64 (k = 4), SGD: lr x 4: the run's 0.1 ->
    # 0.4 on the command line that set it, the default 0.05 -> 0.2; steps 1000 / 4 = 250 there (the default too)
    bs = Setting("batch_size", 16, "args.batch_size", "argparse", "args.batch_size", "train.py", 7, "--bs", 32,
                 "--bs 16", "train.py", 12, "<module>")
    result = _apply(ARGS, [_loader(bs, line=12)], ["--bs", "16", "--lr=0.1", "--max_steps", "1000"], batch_size=64)
    assert 'parser.add_argument("--bs", dest="batch_size", type=int, default=64)' in result.source
    assert 'parser.add_argument("--lr", type=float, default=0.2)' in result.source
    assert 'parser.add_argument("--max_steps", type=int, default=250)' in result.source
    assert result.command == ["--bs", "64", "--lr=0.4", "--max_steps", "250"]
    assert "batch 16 -> 64 (x 4) at the `--bs` default (line 7) and the run's command line" in result.notes["batch_size"]


def test_a_factory_in_another_file_with_the_batch_from_argparse_changes_the_default():
    # `loader = get_dataloader(ds, batch_size=args.bs)`: the DataLoader is built in data.py; the value is
    # the script's --bs default (the run did not set it)
    source = """\
        import argparse

        import torch
        from data import get_dataloader

        parser = argparse.ArgumentParser()
        parser.add_argument("--bs", type=int, default=8)
        args = parser.parse_args()
        loader = get_dataloader(torch.randn(64, 4), batch_size=args.bs)
        """
    bs = Setting("batch_size", 8, "batch_size", "argparse", "args.bs", "train.py", 7, "--bs", 8, "",
                 "train.py", 9, "<module>")
    site = _loader(bs, file="data.py", line=5, stack=[("data.py", 5, "get_dataloader"), ("train.py", 9, "<module>")])
    result = _apply(source, [site], [], batch_size=32)
    assert 'parser.add_argument("--bs", type=int, default=32)' in result.source
    assert result.command is None and result.applied == ["batch_size"]


def test_a_factorys_literal_keyword_in_the_script_is_changed_there():
    source = """\
        import torch
        from data import get_dataloader

        loader = get_dataloader(torch.randn(64, 4), batch_size=8)
        """
    bs = Setting("batch_size", 8, "batch_size", "local", "batch_size", "data.py", 4, scope_file="data.py",
                 scope_line=5, scope_function="get_dataloader")
    site = _loader(bs, file="data.py", line=5, stack=[("data.py", 5, "get_dataloader"), ("train.py", 4, "<module>")])
    result = _apply(source, [site], [], batch_size=32)
    assert "get_dataloader(torch.randn(64, 4), batch_size=32)" in result.source


NANO = """\
import torch

batch_size = 12
learning_rate = 6e-4
max_iters = 6000
exec(open("configurator.py").read())
model = torch.nn.Linear(4, 4)
optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
for it in range(max_iters):
    loss = model(torch.randn(batch_size, 4)).sum()
    loss.backward()
    optimizer.step()
"""


def test_a_module_global_the_configurator_overrode_changes_the_assignment_and_the_command_line():
    # llama2c: `batch_size = 128` in the script, `--batch_size=4` on the run's command line. The old
    # rewrite changed the default alone and the run kept training at 4. Batch 4 -> 16 (k = 4): AdamW
    # lr x sqrt(4) = 2; the run's --max_iters=1000 -> 250 on the command line, the script's 6000 -> 1500
    bs = Setting("batch_size", 4, "batch_size", "global", "batch_size", "train.py", 3, "--batch_size", 12,
                 "--batch_size=4", "train.py", 10, "<module>")
    result = _apply(NANO, [_loader(bs)], ["--batch_size=4", "--max_iters=1000"], batch_size=16)
    assert "batch_size = 16\nlearning_rate = 0.0012\nmax_iters = 1500\n" in result.source
    assert result.command == ["--batch_size=16", "--max_iters=250"]


MINGPT = """\
import sys

from mingpt.model import GPT
from mingpt.trainer import Trainer
from mingpt.utils import CfgNode as CN


def get_config():
    C = CN()
    C.trainer = Trainer.get_default_config()
    return C


if __name__ == '__main__':
    config = get_config()
    config.merge_from_args(sys.argv[1:])
    model = GPT(config.model)
    trainer = Trainer(config.trainer, model, train_dataset)

    # run the optimization
    trainer.run()
"""


def _mingpt_sites(bs_argv: str, value: int, lr=True) -> list[CallSite]:
    """minGPT: the training DataLoader is built in mingpt/trainer.py's Trainer.run() from
    `config.batch_size`, the script's `config.trainer` (run from chargpt.py line 21, `trainer.run()`)."""
    bs = Setting("batch_size", value, "config.batch_size", "attribute", "config.trainer.batch_size",
                 "mingpt/trainer.py", 24, "--trainer.batch_size" if bs_argv else "", 64, bs_argv,
                 "chargpt.py", 21, "<module>")
    stack = [("mingpt/trainer.py", 68, "run"), ("chargpt.py", 21, "<module>")]
    sites = [_loader(bs, file="mingpt/trainer.py", line=68, stack=stack)]
    if lr:
        lr_setting = Setting("lr", 3e-4, "train_config.learning_rate", "attribute", "config.trainer.learning_rate",
                             "mingpt/trainer.py", 25, "", 3e-4, "", "chargpt.py", 21, "<module>")
        sites.append(CallSite("optimizer", "torch.optim.adamw.AdamW", "mingpt/model.py", 283, "configure_optimizers",
                              [list(s) for s in stack], "train", "optimizer", [lr_setting]))
    return sites


def test_a_config_field_the_run_set_on_its_command_line_goes_there_and_the_rest_before_the_run():
    # chargpt: `--trainer.batch_size=4 --trainer.max_iters=1000`; batch 4 -> 16 (k = 4), AdamW lr x 2 = 6e-4
    # set where the run read it (config.trainer.learning_rate, just before `trainer.run()`)
    argv = ["--trainer.batch_size=4", "--trainer.max_iters=1000"]
    result = _apply(MINGPT, _mingpt_sites("--trainer.batch_size=4", 4), argv, path="chargpt.py", batch_size=16)
    assert "    # run the optimization\n    config.trainer.learning_rate = 0.0006\n    trainer.run()\n" \
        in result.source, result.source
    assert result.command == ["--trainer.batch_size=16", "--trainer.max_iters=250"]
    assert result.applied == ["batch_size"]


def test_a_config_field_only_on_the_command_line_is_a_turn_on():
    argv = ["--trainer.batch_size=4", "--trainer.max_iters=1000"]
    result = _apply(MINGPT, _mingpt_sites("--trainer.batch_size=4", 4, lr=False), argv, path="chargpt.py",
                    batch_size=16, batch_lr_rule="none")
    assert result.source == MINGPT and result.already_applied == ["batch_size"]
    assert result.turn_on["batch_size"] == ["--trainer.batch_size=16", "--trainer.max_iters=250"]


def test_a_config_field_the_run_did_not_set_is_assigned_just_before_the_line_that_built_the_loader():
    result = _apply(MINGPT, _mingpt_sites("", 64, lr=False), [], path="chargpt.py", batch_size=128, batch_lr_rule="none")
    assert "    # run the optimization\n    config.trainer.batch_size = 128\n    trainer.run()\n" in result.source
    assert result.command is None
    # the rewrite analyzed again: the run now trains at 128, and the assignment is there
    again = _apply(result.source, _mingpt_sites("", 128, lr=False), [], path="chargpt.py", batch_size=128)
    assert again.source == result.source and again.already_applied == ["batch_size"]


TWO_LOADERS = """\
import torch
from torch.utils.data import DataLoader, RandomSampler

val = DataLoader(val_ds, batch_size=100, num_workers=0, drop_last=False)
train = DataLoader(train_ds, sampler=RandomSampler(train_ds),
                   batch_size=16)
model = torch.nn.Linear(4, 4)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
"""


def test_the_training_loaders_literal_not_the_evaluation_loaders():
    # the static reading picks the first loader without shuffle=False: the evaluation loader (minGPT's adder)
    assert "val_ds, batch_size=128" in _apply(TWO_LOADERS, [], batch_size=128).source
    bs = Setting("batch_size", 16, "16", "literal", "", "train.py", 5)
    result = _apply(TWO_LOADERS, [_loader(bs, line=5)], [], batch_size=64)
    assert "val_ds, batch_size=100," in result.source
    assert "sampler=RandomSampler(train_ds),\n                   batch_size=64)" in result.source
    assert "lr=0.4" in result.source


def test_a_literal_in_another_file_is_refused_with_its_file_and_line():
    bs = Setting("batch_size", 64, "64", "literal", "", "mingpt/trainer.py", 70)
    result = _apply(MINGPT, [_loader(bs, file="mingpt/trainer.py", line=68)], [], path="chargpt.py", batch_size=128)
    assert result.source == MINGPT and result.applied == []
    assert result.skipped["batch_size"] == (
        "the training DataLoader is built at mingpt/trainer.py:70 with `batch_size=64`: set it to 128 there, "
        "ccprof rewrites only the script")


# ------------------------------------------------------------------ what the script asserts on the batch

ASSERTED = (SCRIPTS / "asserted_batch.py").read_text(encoding="utf-8")


def _asserted(argv, value, **options):
    bs = Setting("batch_size", value, "B", "argparse", "args.batch_size", "asserted_batch.py", 12, "--batch_size",
                 4, "--batch_size" if "--batch_size" in argv else "", "asserted_batch.py", 36, "<module>")
    return apply_source(ASSERTED, ["batch_size"], options=options, argv=argv, path="asserted_batch.py",
                        sites=[_loader(bs, file="asserted_batch.py", line=36)])


def test_a_total_batch_asserted_a_multiple_is_raised_to_the_next_multiple_and_scales_the_contract():
    # batch 4 -> 16: tokens per micro-step 16 x 16 x 1 process = 256; the total 128 is no multiple of it
    # (`assert args.total_batch_size % tokens_per_fwdbwd == 0`), so it goes to 256: each optimizer step
    # sees 2x the tokens; AdamW lr x sqrt(2), 20 iterations / 2 = 10
    result = _asserted(["--batch_size", "4"], 4, batch_size=16)
    src = result.source
    assert 'default=256, help="total batch size' in src and 'default=16, help="batch size' in src
    assert 'default=0.00141421)' in src and "--num_iterations\", type=int, default=10)" in src
    assert result.command == ["--batch_size", "16"]
    note = result.notes["batch_size"]
    assert ("`assert args.total_batch_size % tokens_per_fwdbwd == 0` (line 29) needs args.total_batch_size to be "
            "a multiple of 256 with batch 16: total_batch_size 128 -> 256") in note


def test_a_total_that_stays_a_multiple_keeps_the_learning_rate_and_the_run_length():
    # --total_batch_size is 128 tokens; batch 4 -> 8: 8 x 16 = 128 still divides it: one micro-batch
    # instead of two, the same tokens per optimizer step
    result = _asserted(["--batch_size", "4"], 4, batch_size=8)
    assert 'default=8, help="batch size' in result.source and "default=128, help" in result.source
    assert "default=1e-3)" in result.source and "default=20)" in result.source
    assert "still holds with batch 8" in result.notes["batch_size"]


def test_an_assert_the_new_batch_breaks_is_a_refusal_quoting_it():
    source = ASSERTED.replace("    assert 1 <= T <= 1024\n", "    assert B <= 8\n")
    result = apply_source(source, ["batch_size"], options={"batch_size": 16}, argv=[], path="asserted_batch.py")
    assert result.applied == [] and result.source == source
    assert result.skipped["batch_size"].startswith("batch 16 breaks the script's `assert B <= 8` (line 20)")


# ------------------------------------------------------------------ TrainingArguments from the command line

HF_PARSER = """\
from transformers import HfArgumentParser, Trainer, TrainingArguments

(training_args,) = HfArgumentParser((TrainingArguments,)).parse_args_into_dataclasses()
trainer = Trainer(model=model, args=training_args, train_dataset=train)
trainer.train()
"""


def test_training_arguments_from_hfargumentparser_take_the_batch_on_the_command_line():
    # per_device_train_batch_size 4 -> 16 (k = 4); the Trainer's AdamW: learning_rate 5e-5 (the default) x 2
    result = _apply(HF_PARSER, [], ["--output_dir", "out", "--per_device_train_batch_size", "4"], batch_size=16)
    assert result.source == HF_PARSER and result.already_applied == ["batch_size"]
    assert result.turn_on["batch_size"] == ["--output_dir", "out", "--per_device_train_batch_size", "16",
                                            "--learning_rate=0.0001"]


def test_a_config_fields_literal_in_the_script_is_changed_there():
    # the script's own config function writes `C.trainer.batch_size = 64`: that line changes, nothing is inserted
    source = MINGPT.replace("    C.trainer = Trainer.get_default_config()\n",
                            "    C.trainer = Trainer.get_default_config()\n    C.trainer.batch_size = 64\n")
    bs = Setting("batch_size", 64, "config.batch_size", "attribute", "config.trainer.batch_size", "chargpt.py", 11,
                 "", 64, "", "chargpt.py", 22, "<module>")
    site = _loader(bs, file="mingpt/trainer.py", line=68, stack=[("mingpt/trainer.py", 68, "run"),
                                                                 ("chargpt.py", 22, "<module>")])
    result = _apply(source, [site], [], path="chargpt.py", batch_size=128, batch_lr_rule="none")
    assert result.source == source.replace("batch_size = 64", "batch_size = 128")


def test_a_parameter_in_another_file_that_is_the_scripts_own_option_in_the_run_is_set_as_that_option():
    # llama2c: the DataLoader is built in tinystories.py from its parameter `batch_size`, handed on by
    # `partial(Task.iter_batches, batch_size=batch_size)`: the script's global, 4 in the run (--batch_size=4)
    source = NANO.replace("model = torch.nn.Linear(4, 4)\n",
                          "iter_batches = partial(Task.iter_batches, batch_size=batch_size)\n"
                          "model = torch.nn.Linear(4, 4)\n")
    bs = Setting("batch_size", 4, "batch_size", "local", "batch_size", "tinystories.py", 244,
                 scope_file="tinystories.py", scope_line=244, scope_function="iter_batches")
    site = _loader(bs, file="tinystories.py", line=244, stack=[("tinystories.py", 244, "iter_batches"),
                                                               ("train.py", 11, "<module>")])
    result = _apply(source, [site], ["--batch_size=4", "--max_iters=1000"], batch_size=16)
    assert "batch_size = 16\nlearning_rate = 0.0012\nmax_iters = 1500\n" in result.source
    assert result.command == ["--batch_size=16", "--max_iters=250"]
    # not the same value in the run: the script's option is not what the loader read
    other = _apply(source, [site], ["--batch_size=8", "--max_iters=1000"], batch_size=16)
    assert other.applied == [] and "tinystories.py:244" in other.skipped["batch_size"]


def test_a_batch_the_script_makes_itself_is_refused_naming_the_models_call():
    """No DataLoader, option or global holds the batch (pytorch/examples' regression: get_batch()
    with a default): the refusal names the line that feeds the model, never 'found none'."""
    from tests.helpers.codemod import rewrite, site_at

    src = """\
import torch
def get_batch(batch_size=32):
    x = torch.randn(batch_size, 4)
    return x, x.sum(1, keepdim=True)
fc = torch.nn.Linear(4, 1)
for i in range(100):
    x, y = get_batch()
    loss = torch.nn.functional.mse_loss(fc(x), y)
    loss.backward()
"""
    forward = site_at(src, "fc(x)", "forward", "torch.nn.modules.linear.Linear", "fc")
    why = rewrite(src, "batch_size", sites=[forward], batch_size=64).skipped["batch_size"]
    assert "train.py:8" in why and "made by the script's own code" in why and "found none" not in why, why
    why = rewrite(src, "batch_size", batch_size=64).skipped["batch_size"]
    assert "found none" not in why and "--from advice.json" in why, why
