"""The batch_size codemod, before -> after: it writes the contract the advice priced -- the batch,
the learning rate by the rule, and the run's length (steps / k for keep=samples, epochs x k for
keep=steps); what it cannot find as a number it names in its note."""
from __future__ import annotations

import textwrap

from tests.helpers.codemod import HF, PLAIN, check, rewrite

NANO = """\
import torch

batch_size = 12
learning_rate = 6e-4
max_iters = 6000
warmup_iters = 200
lr_decay_iters = 6000
min_lr = 6e-5

model = torch.nn.Linear(4, 4)
optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
for it in range(max_iters):
    loss = model(torch.randn(batch_size, 4)).sum()
    loss.backward()
    optimizer.step()
"""

ARGS = """\
import argparse

import torch
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--lr", type=float, default=0.05)
args = parser.parse_args()
model = torch.nn.Linear(4, 2)
loader = DataLoader(TensorDataset(torch.randn(256, 4)), batch_size=args.batch_size, shuffle=True)
opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
for epoch in range(args.epochs):
    for (x,) in loader:
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
"""


def test_keep_samples_divides_the_steps_and_the_schedule_and_scales_the_lr_by_the_sqrt_rule():
    # batch 12 -> 48 (k = 4), AdamW: lr x sqrt(4) = 2; 6000 steps / 4 = 1500, warm-up 200 / 4 = 50
    after = NANO.replace("batch_size = 12", "batch_size = 48").replace("learning_rate = 6e-4", "learning_rate = 0.0012") \
        .replace("max_iters = 6000", "max_iters = 1500").replace("warmup_iters = 200", "warmup_iters = 50") \
        .replace("lr_decay_iters = 6000", "lr_decay_iters = 1500").replace("min_lr = 6e-5", "min_lr = 0.00012")
    result = check(NANO, after, "batch_size", batch_size=48)
    note = result.notes["batch_size"]
    assert "keep=samples" in note and "square-root rule for AdamW (Malladi et al. 2022)" in note


def test_keep_steps_multiplies_the_epochs_and_scales_the_lr_by_the_linear_rule():
    # batch 32 -> 64 (k = 2), SGD: lr x 2 (Goyal et al.); same steps: 3 epochs -> 6
    after = ARGS.replace("default=3)", "default=6)").replace("default=32)", "default=64)") \
        .replace("default=0.05)", "default=0.1)")
    result = check(ARGS, after, "batch_size", batch_size=64, batch_keep="steps")
    assert "linear scaling rule for SGD (Goyal et al. 2017)" in result.notes["batch_size"]


def test_keep_samples_on_an_epoch_run_keeps_the_epochs_and_lr_rule_none_keeps_the_lr():
    after = ARGS.replace("default=32)", "default=64)")
    result = check(ARGS, after, "batch_size", batch_size=64, batch_lr_rule="none")
    note = result.notes["batch_size"]
    assert "limits in epochs stay (each epoch has 2x fewer steps)" in note and "kept as it is" in note


def test_the_trainer_gets_its_batch_and_the_learning_rate_it_had_by_default():
    # TrainingArguments' default learning_rate 5e-5 x sqrt(2) (the Trainer's AdamW); epochs kept
    check(HF, HF.replace("per_device_train_batch_size=8,", "per_device_train_batch_size=16,\n"
                         "    learning_rate=7.07107e-05,"), "batch_size", batch_size=16)
    # same steps: its 3 default epochs become 6
    out = rewrite(HF, "batch_size", batch_size=16, batch_keep="steps").source
    assert "    num_train_epochs=6.0,\n" in out


def test_schedule_literals_follow_the_steps():
    before = textwrap.dedent("""\
        import torch
        from transformers import get_linear_schedule_with_warmup

        model = torch.nn.Linear(4, 4)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=100, num_training_steps=1000)
        loader = torch.utils.data.DataLoader(list(range(64)), batch_size=8, shuffle=True)
        """)
    out = rewrite(before, "batch_size", batch_size=32).source
    assert "num_warmup_steps=25, num_training_steps=250" in out and "batch_size=32" in out and "lr=0.002" in out


def test_a_learning_rate_that_is_no_number_is_named_with_the_factor():
    before = NANO.replace("lr=learning_rate", "lr=get_lr(0)")
    result = rewrite(before, "batch_size", batch_size=48)
    assert "learning_rate = 6e-4" in result.source            # not read by the optimizer: left alone
    assert "`lr=get_lr(0)` (line 11) is not a number this rewrite can scale: multiply it by 2" \
        in result.notes["batch_size"]


def test_nothing_to_find_says_what_it_looked_for():
    result = rewrite(PLAIN, "batch_size", batch_size=16)
    assert result.source == PLAIN and result.applied == []
    assert "`DataLoader(..., batch_size=N)`" in result.skipped["batch_size"]


LOOPS = """\
import torch

model = torch.nn.Linear(4, 4)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loader = torch.utils.data.DataLoader(list(range(64)), batch_size=8, shuffle=True)
for it in range(1000):
    loss = model(torch.randn(8, 4)).sum()
    loss.backward()
    optimizer.step()
for epoch in range(3):
    for x in loader:
        loss = model(torch.randn(8, 4)).sum()
        loss.backward()
        optimizer.step()
"""


def test_a_literal_loop_around_the_step_is_the_run_length_it_changes():
    # the user's case: a run limited by `range(1000)` kept its 1000 steps at 4x the batch, 4x the
    # samples for more GPU time than the advice priced. keep=samples: 1000 / 4 = 250 steps; the
    # epoch loop around a loop over data stays. keep=steps: the epochs x 4, the step loop stays
    batch = LOOPS.replace("batch_size=8", "batch_size=32").replace("lr=0.1", "lr=0.4")
    check(LOOPS, batch.replace("range(1000)", "range(250)"), "batch_size", batch_size=32)
    check(LOOPS, batch.replace("range(3)", "range(12)"), "batch_size", batch_size=32, batch_keep="steps")


def test_a_setting_the_run_passed_on_its_command_line_goes_on_the_command_line_too():
    # the advice came from `python train.py --batch-size 32 --lr=0.05`: new defaults alone would not reach it
    from ccprof.applier.codemods import apply_source
    result = apply_source(ARGS, ["batch_size"], options={"batch_size": 64}, argv=["--batch-size", "32", "--lr=0.05"])
    assert "default=64)" in result.source and "default=0.1)" in result.source
    assert result.command_line["batch_size"] == {"--batch-size": "64", "--lr": "0.1"}
    assert result.command == ["--batch-size", "64", "--lr=0.1"]
    assert "the run's command line sets --batch-size: --batch-size=64 goes there too" in result.notes["batch_size"]


def test_a_positional_learning_rate_is_scaled_too():
    before = LOOPS.replace("lr=0.1", "0.1, momentum=0.9")
    after = before.replace("batch_size=8", "batch_size=16").replace("0.1, momentum", "0.2, momentum") \
        .replace("range(1000)", "range(500)")
    check(before, after, "batch_size", batch_size=16)
