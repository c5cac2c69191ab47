"""One vocabulary of library names (ccprof/script/names.py) for the profiler's static facts and
the codemods (issue 12): what the report says the script already does, the rewrite agrees with.
Before, the codemods had their own lists, which missed FSDP's checkpoint_wrapper,
ShardedGradScaler and torch._dynamo.optimize, so `ccprof apply` added a second one."""
from __future__ import annotations

import pytest

from ccprof.applier.codemods import apply_source
from ccprof.profiler.static import static_facts_from_source
from ccprof.script.names import NAMES, matches

LOOP = """\
import torch
import torch.nn as nn
{imports}

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(8, 8) for _ in range(4)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

model = Net()
{setup}
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
for step in range(10):
    x = torch.randn(16, 8)
    loss = model(x).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""

CASES = [
    # (fact and tweak, imports, setup)
    ("checkpointing", "from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import "
                      "apply_activation_checkpointing",
     "apply_activation_checkpointing(model, check_fn=lambda m: isinstance(m, nn.Linear))"),
    ("compile", "import torch._dynamo as dynamo", "model = dynamo.optimize('inductor')(model)"),
    ("compile", "import torch as T", "model = T.compile(model)"),
    ("distributed", "from torch.distributed.fsdp import fully_shard", "fully_shard(model)"),
]


@pytest.mark.parametrize("tweak,imports,setup", CASES)
def test_what_the_facts_see_the_codemod_calls_already_applied(tweak, imports, setup):
    src = LOOP.format(imports=imports, setup=setup)
    facts = static_facts_from_source(src)
    fact = "fsdp" if tweak == "distributed" else tweak
    assert getattr(facts, fact), f"static facts miss {fact}"
    result = apply_source(src, [tweak])
    assert result.already_applied == [tweak], result.skipped


def test_a_sharded_grad_scaler_is_a_grad_scaler_to_both():
    q = "torch.distributed.fsdp.sharded_grad_scaler.ShardedGradScaler"
    assert matches("grad_scaler", q)
    src = LOOP.format(imports="from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler",
                      setup="scaler = ShardedGradScaler()")
    assert static_facts_from_source(src).grad_scaler
    import libcst as cst

    from ccprof.script.facts import ModuleFacts
    from ccprof.script.info import ScriptInfo

    info = ScriptInfo(ModuleFacts(cst.parse_module(src)))
    assert info.scaler_names() == {"scaler"}


def test_every_name_can_be_found_by_its_last_part():
    """``lasts`` lets a script without the word skip name resolution: each kind's examples
    must end with one of them."""
    examples = {"autocast": "torch.cuda.amp.autocast", "grad_scaler": "torch.amp.GradScaler",
                "checkpointing": "torch.utils.checkpoint.checkpoint", "dataloader": "torch.utils.data.DataLoader",
                "optimizer": "torch.optim.AdamW", "hf_trainer": "trl.SFTTrainer",
                "training_arguments": "transformers.Seq2SeqTrainingArguments", "lightning_trainer": "lightning.Trainer",
                "ddp": "torch.nn.parallel.DistributedDataParallel", "compile": "torch._dynamo.optimize",
                "clip_grad": "torch.nn.utils.clip_grad_norm_", "accelerator": "accelerate.Accelerator"}
    for kind, q in examples.items():
        assert matches(kind, q), kind
        assert any(q.endswith(l) or l in q for l in NAMES[kind].lasts), kind
    assert not matches("optimizer", "torch.optim.lr_scheduler.StepLR")
    assert not matches("hf_trainer", "transformers.TrainerCallback")
    assert not matches("checkpointing", "mylib.checkpoint")
