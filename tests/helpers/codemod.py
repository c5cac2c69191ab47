"""What the codemod tests share: ``rewrite`` and ``check`` (before -> after, then a second pass
changes nothing) and the training scripts they rewrite (plain loop, aliased imports, HF Trainer,
Lightning, a custom model with repeated blocks)."""
from __future__ import annotations

import textwrap

from ccprof.applier.codemods import ApplyResult, apply_source


def rewrite(before: str, *tweaks: str, **options) -> ApplyResult:
    return apply_source(textwrap.dedent(before), list(tweaks), options=options)


def check(before: str, after: str, *tweaks: str, **options) -> ApplyResult:
    """``before`` rewrites to ``after``, and rewriting ``after`` again changes nothing."""
    result = rewrite(before, *tweaks, **options)
    assert result.source == textwrap.dedent(after), result.source
    assert result.applied == list(tweaks), result.skipped
    again = apply_source(result.source, list(tweaks), options=options)
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
