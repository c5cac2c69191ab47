"""The mixed_precision codemod, before -> after: autocast around the forward and the loss (plain loops,
aliased imports, HF Trainer, Lightning, the shapes of public scripts), fp16's GradScaler, and the
"already applied" and "nothing to do" cases; with the run's sites, the forward where the run called it."""
from __future__ import annotations

import textwrap

from ccprof.applier.codemods import apply_source
from tests.helpers.codemod import ALIASED, HF, LIGHTNING, PLAIN, SCRIPT, check, rewrite, site_at
from tests.helpers.paths import EXTERNAL


def test_mixed_precision_plain_bf16_wraps_forward_and_loss():
    check(PLAIN, PLAIN.replace(
        "    out = model(x)  # forward\n    loss = out.pow(2).mean()\n",
        "    with torch.autocast(device_type=next(model.parameters()).device.type, dtype=torch.bfloat16):\n"
        "        out = model(x)  # forward\n        loss = out.pow(2).mean()\n"), "mixed_precision")


def test_mixed_precision_fp16_adds_grad_scaler():
    result = check(PLAIN, PLAIN.replace(
        "lr=1e-3)\n", "lr=1e-3)\nscaler = torch.amp.GradScaler(next(model.parameters()).device.type)"
                      "  # fp16 needs loss scaling\n").replace(
        "    out = model(x)  # forward\n    loss = out.pow(2).mean()\n",
        "    with torch.autocast(device_type=next(model.parameters()).device.type, dtype=torch.float16):\n"
        "        out = model(x)  # forward\n        loss = out.pow(2).mean()\n").replace(
        "    loss.backward()\n    optimizer.step()\n",
        "    scaler.scale(loss).backward()\n    scaler.step(optimizer)\n    scaler.update()\n"),
        "mixed_precision", dtype="fp16")
    assert "GradScaler" in result.diff


def test_mixed_precision_uses_the_device_the_model_is_moved_to():
    src = """\
    import torch
    def main(args):
        model = torch.nn.Linear(4, 1).to(args.device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for x in data:
            loss = model(x).sum()
            loss.backward()
            opt.step()
    """
    out = rewrite(src, "mixed_precision").source
    assert "torch.autocast(device_type=torch.device(args.device).type, dtype=torch.bfloat16)" in out


def test_mixed_precision_aliased_imports_match():
    out = rewrite(ALIASED, "mixed_precision").source
    assert "    with torch.autocast(" in out and "import torch\n" in out
    assert out.count("import torch\n") == 1


def test_mixed_precision_hf_and_lightning_keywords():
    hf = rewrite(HF, "mixed_precision")
    assert "    bf16=True,\n    use_cpu=not torch.cuda.is_available(),\n)" in hf.source
    assert "import torch\n" in hf.source
    assert "fp16=True" in rewrite(HF, "mixed_precision", dtype="fp16").source
    lit = rewrite(LIGHTNING, "mixed_precision").source
    assert 'L.Trainer(max_epochs=3, precision="bf16-mixed")' in lit


AUTOCAST_BF16 = "with torch.autocast(device_type=next(model.parameters()).device.type, dtype=torch.bfloat16):"


def test_mixed_precision_forward_in_if_else_above_the_loss():
    before = """\
    import torch

    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x in data:
        opt.zero_grad()
        if x.dim() == 1:
            out = model(x.unsqueeze(0))
        else:
            x = x.flatten(1)
            out = model(x)
        loss = out.pow(2).mean()
        loss.backward()
        opt.step()
    """
    after = f"""\
    import torch

    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x in data:
        opt.zero_grad()
        {AUTOCAST_BF16}
            if x.dim() == 1:
                out = model(x.unsqueeze(0))
            else:
                x = x.flatten(1)
                out = model(x)
            loss = out.pow(2).mean()
        loss.backward()
        opt.step()
    """
    check(before, after, "mixed_precision")


def test_mixed_precision_forward_and_loss_inside_a_with_block():
    before = """\
    import torch
    from torch.profiler import record_function

    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x in data:
        with record_function("forward"):
            out = model(x)
            loss = out.pow(2).mean()
        loss.backward()
        opt.step()
    """
    after = f"""\
    import torch
    from torch.profiler import record_function

    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x in data:
        {AUTOCAST_BF16}
            with record_function("forward"):
                out = model(x)
                loss = out.pow(2).mean()
        loss.backward()
        opt.step()
    """
    check(before, after, "mixed_precision")


def test_mixed_precision_forward_before_a_with_block_holding_the_loss():
    before = """\
    import torch

    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in data:
        out = model(x)
        with torch.no_grad():
            w = y.abs().mean()
        with record_function("loss"):
            loss = ((out - y) ** 2).mean() * w
        loss.backward()
        opt.step()
    """
    after = f"""\
    import torch

    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in data:
        {AUTOCAST_BF16}
            out = model(x)
            with torch.no_grad():
                w = y.abs().mean()
            with record_function("loss"):
                loss = ((out - y) ** 2).mean() * w
        loss.backward()
        opt.step()
    """
    check(before, after, "mixed_precision")


def test_mixed_precision_leaves_an_evaluation_block_above_the_forward_outside():
    before = """\
    import torch

    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step, x in enumerate(data):
        if step % 100 == 0:
            with torch.no_grad():
                val = model(x_val).mean()
        out = model(x)
        loss = out.pow(2).mean()
        loss.backward()
        opt.step()
    """
    after = before.replace(
        "        out = model(x)\n        loss = out.pow(2).mean()\n",
        f"        {AUTOCAST_BF16}\n            out = model(x)\n            loss = out.pow(2).mean()\n")
    check(before, after, "mixed_precision")


WORD_LM = """\
import torch
import torch.nn as nn

import model

device = torch.device("cuda" if args.cuda else "cpu")
model = model.RNNModel(args.model, ntokens, args.emsize, args.nhid, args.nlayers).to(device)
criterion = nn.NLLLoss()


def train():
    model.train()
    hidden = model.init_hidden(args.batch_size)
    for batch, i in enumerate(range(0, train_data.size(0) - 1, args.bptt)):
        data, targets = get_batch(train_data, i)
        # Starting each batch, we detach the hidden state from how it was previously produced.
        model.zero_grad()
        if args.model == 'Transformer':
            output = model(data)
        else:
            hidden = repackage_hidden(hidden)
            output, hidden = model(data, hidden)
        loss = criterion(output.view(-1, ntokens), targets)
        loss.backward()

        # `clip_grad_norm` helps prevent the exploding gradient problem in RNNs / LSTMs.
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)

        total_loss += loss.item()
"""


def test_mixed_precision_word_language_model_shape():
    """pytorch/examples word_language_model: no torch.optim optimizer (a hand-written SGD update),
    the forward in an if/else above the loss; autocast covers both, backward and update stay out."""
    after = WORD_LM.replace("""\
        if args.model == 'Transformer':
            output = model(data)
        else:
            hidden = repackage_hidden(hidden)
            output, hidden = model(data, hidden)
        loss = criterion(output.view(-1, ntokens), targets)
""", """\
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
            if args.model == 'Transformer':
                output = model(data)
            else:
                hidden = repackage_hidden(hidden)
                output, hidden = model(data, hidden)
            loss = criterion(output.view(-1, ntokens), targets)
""")
    assert after != WORD_LM
    check(WORD_LM, after, "mixed_precision")


def test_mixed_precision_fp16_without_an_optimizer_says_why():
    result = rewrite(WORD_LM, "mixed_precision", dtype="fp16")
    assert result.source == textwrap.dedent(WORD_LM) and result.applied == []
    assert "scaler.step(optimizer)" in result.skipped["mixed_precision"]


def test_mixed_precision_already_applied_names_the_line():
    src = PLAIN.replace("    out = model(x)", "    with torch.autocast('cpu'):\n        out = model(x)")
    result = rewrite(src, "mixed_precision")
    assert result.source == src and result.already_applied == ["mixed_precision"]
    assert "line 10" in result.skipped["mixed_precision"]


# --- issue 11, misread 6: rewrites that claim more than they do --------------------------------
CLASS_TRAINER = '''\
import torch
import torch.nn.functional as F


class Trainer:
    def __init__(self, model, optimizer):
        self.model = model
        self.optimizer = optimizer

    def _run_batch(self, source, targets):
        self.optimizer.zero_grad()
        output = self.model(source)
        loss = F.cross_entropy(output, targets)
        loss.backward()
        self.optimizer.step()


model = torch.nn.Linear(20, 4)
optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
'''


def test_mixed_precision_covers_the_forward_in_a_trainer_class_method():
    """The DDP tutorial: the forward is `self.model(source)`, bound from `model` in __init__."""
    check(CLASS_TRAINER, CLASS_TRAINER.replace('''        output = self.model(source)
        loss = F.cross_entropy(output, targets)''', '''        with torch.autocast(device_type="cuda" if torch.cuda.is_available() else "cpu", dtype=torch.bfloat16):
            output = self.model(source)
            loss = F.cross_entropy(output, targets)'''), "mixed_precision")


def test_mixed_precision_follows_a_model_called_through_another_name():
    src = PLAIN.replace("    out = model(x)", "    out = net(x)").replace(
        "optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)",
        "optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)\nnet = model.to('cpu')")
    assert "out = net(x)" in src and "net = model.to('cpu')" in src
    result = rewrite(src, "mixed_precision")
    assert result.applied == ["mixed_precision"], result.skipped
    assert "with torch.autocast(" in result.source
    body = result.source.split("with torch.autocast(", 1)[1]
    assert "out = net(x)" in body.split("backward", 1)[0]          # the forward is inside


def test_mixed_precision_refuses_when_only_the_loss_would_be_wrapped():
    src = '''\
import torch
import torch.nn.functional as F

model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)

def forward_all(x):
    return model(x)

for step in range(10):
    x = torch.randn(8, 4)
    out = forward_all(x)
    loss = F.mse_loss(out, torch.zeros(8, 1))
    loss.backward()
    opt.step()
'''
    result = rewrite(src, "mixed_precision")
    assert result.applied == [] and result.source == src
    assert "found none" in result.skipped["mixed_precision"] and "line 14" in result.skipped["mixed_precision"]


DCGAN = '''\
import torch
import torch.nn as nn

netD = nn.Sequential(nn.Linear(16, 1), nn.Sigmoid())
criterion = nn.BCELoss()
optD = torch.optim.Adam(netD.parameters(), lr=2e-4)
for i in range(50):
    real = torch.randn(32, 16)
    netD.zero_grad()
    output = netD(real).view(-1)
    errD_real = criterion(output, torch.ones(32))
    errD_real.backward()
    optD.step()
'''


def test_mixed_precision_keeps_an_autocast_unsafe_bce_loss_outside_in_float32():
    """dcgan: nn.BCELoss is refused under CUDA autocast; the loss leaves the region on fp32 inputs."""
    result = check(DCGAN, DCGAN.replace('''    output = netD(real).view(-1)
    errD_real = criterion(output, torch.ones(32))''', '''    with torch.autocast(device_type=next(netD.parameters()).device.type, dtype=torch.bfloat16):
        output = netD(real).view(-1)
    errD_real = criterion(output.float(), torch.ones(32).float())'''), "mixed_precision")
    assert "BCELoss is autocast-unsafe" in result.notes["mixed_precision"]
    # the functional form too
    functional = DCGAN.replace("criterion = nn.BCELoss()\n", "").replace(
        "criterion(output, torch.ones(32))", "nn.functional.binary_cross_entropy(output, torch.ones(32))")
    result = rewrite(functional, "mixed_precision")
    assert "binary_cross_entropy(output.float(), torch.ones(32).float())" in result.source


# ------------------------------------------------ with the run's sites (ccprof apply --from advice.json)

GAT = '''\
import torch
import torch.nn.functional as F


def train_iter(epoch, model, optimizer, input, target):
    model.train()
    optimizer.zero_grad()

    # Forward pass
    output = model(*input)
    loss = F.nll_loss(output, target)

    loss.backward()
    optimizer.step()


if __name__ == "__main__":
    gat_net = GAT(nfeat=8, nhid=8, nclass=3)
    optimizer = torch.optim.Adam(gat_net.parameters(), lr=5e-3)
    for epoch in range(10):
        train_iter(epoch + 1, gat_net, optimizer, (features, adj), labels)
'''


def test_mixed_precision_with_sites_wraps_the_forward_where_the_run_called_it():
    """pyGAT: the forward `output = model(*input)` is in train_iter(), which the loop passes gat_net to;
    the script alone does not tie `model` to gat_net, the run's forward site does."""
    sites = [site_at(GAT, "output = model(*input)", "forward", "GAT", "output")]
    result = check(GAT, GAT.replace('''    output = model(*input)
    loss = F.nll_loss(output, target)''', '''    with torch.autocast(device_type=next(model.parameters()).device.type, dtype=torch.bfloat16):
        output = model(*input)
        loss = F.nll_loss(output, target)'''), "mixed_precision", sites=sites)
    compile(result.source, "train.py", "exec")
    assert "found none" in rewrite(GAT, "mixed_precision").skipped["mixed_precision"]     # without the sites


GAN = '''\
import torch
import torch.nn as nn

G = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 4))
D = nn.Sequential(nn.Linear(4, 1))
d_optimizer = torch.optim.SGD(D.parameters(), lr=0.1)
g_optimizer = torch.optim.SGD(G.parameters(), lr=0.1)
for step in range(10):
    d_real = D(torch.randn(2, 4))
    d_error = d_real.mean()
    d_error.backward()
    d_optimizer.step()
    fake = G(torch.randn(2, 4))
    g_error = -D(fake).mean()
    g_error.backward()
    g_optimizer.step()
'''


def test_mixed_precision_with_sites_covers_every_trained_forward_of_a_gan():
    """D's step and G's step each get one region; G's forward and D's on the next line share it (both
    models sit on one device: the region's device is the first model's it calls, by name)."""
    sites = [site_at(GAN, "d_real = D(", "forward", "Sequential", "d_real"),
             site_at(GAN, "fake = G(", "forward", "Sequential", "fake"),
             site_at(GAN, "g_error = -D(", "forward", "Sequential", "g_error")]
    check(GAN, GAN.replace('''    d_real = D(torch.randn(2, 4))
    d_error = d_real.mean()''', '''    with torch.autocast(device_type=next(D.parameters()).device.type, dtype=torch.bfloat16):
        d_real = D(torch.randn(2, 4))
        d_error = d_real.mean()''').replace('''    fake = G(torch.randn(2, 4))
    g_error = -D(fake).mean()''', '''    with torch.autocast(device_type=next(D.parameters()).device.type, dtype=torch.bfloat16):
        fake = G(torch.randn(2, 4))
        g_error = -D(fake).mean()'''), "mixed_precision", sites=sites)


def test_mixed_precision_with_sites_keeps_the_grad_scaler_for_fp16():
    sites = [site_at(GAT, "output = model(*input)", "forward", "GAT", "output")]
    result = rewrite(GAT, "mixed_precision", sites=sites, dtype="fp16")
    assert result.applied == ["mixed_precision"], result.skipped
    assert "dtype=torch.float16" in result.source and "scaler.scale(loss).backward()" in result.source
    assert "scaler.step(optimizer)" in result.source and "scaler.update()" in result.source
    compile(result.source, "train.py", "exec")


def test_mixed_precision_with_sites_refuses_a_forward_in_another_file_naming_where():
    site = site_at(GAT, "output = model(*input)", "forward", "mingpt.model.GPT", file="../../mingpt/trainer.py",
                   stack=[["../../mingpt/trainer.py", 10, "run"], [SCRIPT, 21, "<module>"]])
    result = rewrite(GAT, "mixed_precision", sites=[site])
    why = result.skipped["mixed_precision"]
    assert result.applied == [] and result.source == GAT
    assert "the forward of GPT at ../../mingpt/trainer.py:10, reached from line 21 of this script" in why


def test_mixed_precision_with_sites_refuses_a_forward_sharing_the_backward_statement():
    src = GAT.replace("    output = model(*input)\n    loss = F.nll_loss(output, target)\n\n    loss.backward()\n",
                      "    F.nll_loss(model(*input), target).backward()\n")
    result = rewrite(src, "mixed_precision", sites=[site_at(src, "model(*input)", "forward", "GAT")])
    assert result.applied == [] and "in one statement; compute the loss on its own line" in \
        result.skipped["mixed_precision"]


def test_mixed_precision_with_sites_refuses_a_forward_reached_through_a_library_loop():
    """The run's innermost frame of the script is `trainer.run()`: wrapping it would autocast the backward."""
    src = GAT.replace("        train_iter(epoch + 1, gat_net, optimizer, (features, adj), labels)\n",
                      "        trainer.run()\n")
    result = rewrite(src, "mixed_precision", sites=[site_at(src, "trainer.run()", "forward", "GAT")])
    assert result.applied == [] and "through `trainer.run()`, which does not call the model itself" in \
        result.skipped["mixed_precision"]


def test_mixed_precision_with_sites_takes_the_if_else_around_the_forward_with_the_loss_after_it():
    """The run called the forward in both branches; the loss follows the if/else: one region holds all."""
    before = """\
    import torch

    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x in data:
        opt.zero_grad()
        if x.dim() == 1:
            out = model(x.unsqueeze(0))
        else:
            x = x.flatten(1)
            out = model(x)
        loss = out.pow(2).mean()
        loss.backward()
        opt.step()
    """
    after = """\
    import torch

    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x in data:
        opt.zero_grad()
        with torch.autocast(device_type=next(model.parameters()).device.type, dtype=torch.bfloat16):
            if x.dim() == 1:
                out = model(x.unsqueeze(0))
            else:
                x = x.flatten(1)
                out = model(x)
            loss = out.pow(2).mean()
        loss.backward()
        opt.step()
    """
    sites = [site_at(before, "out = model(x.unsqueeze(0))", "forward", "Linear"),
             site_at(before, "out = model(x)", "forward", "Linear")]
    check(before, after, "mixed_precision", sites=sites)


def test_mixed_precision_with_sites_rewrites_bert_as_the_script_only_reading_does():
    """graykode's BERT: the forward, the losses, then a print of the loss under `if`: the region
    ends at the loss, the print stays outside, with the run's sites as without them."""
    src = (EXTERNAL / "bert_graykode" / "BERT.py").read_text(encoding="utf-8")
    site = site_at(src, "logits_lm, logits_clsf = model(input_ids, segment_ids, masked_pos)", "forward", "BERT",
                   file="BERT.py")
    alone = apply_source(src, ["mixed_precision"], path="BERT.py")
    with_sites = apply_source(src, ["mixed_precision"], path="BERT.py", sites=[site])
    assert with_sites.applied == ["mixed_precision"] and with_sites.source == alone.source
    assert "    with torch.autocast(" in with_sites.source and "            if (epoch + 1) % 10" not in with_sites.source
