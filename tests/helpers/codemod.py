"""What the codemod tests share: ``rewrite`` and ``check`` (before -> after, then a second pass
changes nothing) and the training scripts they rewrite (plain loop, aliased imports, HF Trainer,
Lightning, a custom model with repeated blocks)."""
from __future__ import annotations

import textwrap
from typing import Sequence

from ccprof.applier.codemods import ApplyResult, apply_source
from ccprof.artefacts.profile import CallSite

SCRIPT = "train.py"          # the name the scripts below are rewritten under


def rewrite(before: str, *tweaks: str, sites: Sequence[CallSite] = (), **options) -> ApplyResult:
    """``before`` rewritten as ``train.py`` (the file ``sites`` name: where the run built and called
    things, as ``ccprof apply --from`` reads them from profile.json)."""
    return apply_source(textwrap.dedent(before), list(tweaks), options=options, sites=sites, path=SCRIPT)


def check(before: str, after: str, *tweaks: str, sites: Sequence[CallSite] = (), **options) -> ApplyResult:
    """``before`` rewrites to ``after``, and rewriting ``after`` again changes nothing."""
    result = rewrite(before, *tweaks, sites=sites, **options)
    assert result.source == textwrap.dedent(after), result.source
    assert result.applied == list(tweaks), result.skipped
    again = apply_source(result.source, list(tweaks), options=options, sites=sites, path=SCRIPT)
    assert again.source == result.source
    assert again.applied == [] and set(again.already_applied) == set(tweaks), again.skipped
    return result


PLAIN = """\
import torch
import torch.nn as nn

# a tiny model
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

for step in range(10):
    x = torch.randn(16, 4)
    out = model(x)  # forward
    loss = out.pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""

ALIASED = """\
import torch as T
from torch import nn, optim
from torch.optim import AdamW

model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
opt = AdamW(model.parameters(), lr=1e-3)
sgd = optim.SGD(model.parameters(), lr=0.1)
for batch in range(10):
    loss = model(T.randn(16, 4)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
"""

HF = """\
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

model = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=4, vocab_size=256))
args = TrainingArguments(
    output_dir="out",
    per_device_train_batch_size=8,
)
trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val)
trainer.train()
"""

LIGHTNING = """\
import lightning as L
import torch


class Lit(L.LightningModule):
    def validation_step(self, batch, i):
        self.log("val_loss", self(batch).mean())

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


trainer = L.Trainer(max_epochs=3)
trainer.fit(Lit())
"""


CUSTOM = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(16, 8)
        self.layers = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        x = self.emb(x)
        for i, layer in enumerate(self.layers):
            x = layer(x)  # (B, 8)
        return self.head(x)


model = Net()
optimizer = torch.optim.AdamW(model.parameters())
"""


def line_of(src: str, text: str) -> int:
    """The 1-based line of ``src`` (dedented) that holds ``text``."""
    return next(i for i, line in enumerate(textwrap.dedent(src).splitlines(), 1) if text in line)


def site_at(src: str, text: str, what: str, cls: str = "", name: str = "", file: str = SCRIPT,
            role: str = "train", **kw) -> CallSite:
    """The run's record (``Profile.sites``) of a call at the line of ``src`` that holds ``text``:
    ``site_at(GAN, "G = Generator(", "model", "gan.Generator", "G")``."""
    return CallSite(what, cls=cls, file=file, line=line_of(src, text), role=role, name=name, **kw)
