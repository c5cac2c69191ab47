"""Before/after tests for the ``ccprof apply`` codemods (plain loops, aliased imports, HF Trainer,
Lightning), plus "already applied" and "nothing to do" cases."""
from __future__ import annotations

import textwrap

import pytest

from ccprof.applier.codemods import CODEMODS, ApplyResult, ScriptSyntaxError, apply_source, codemod_ids


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


def test_registry_has_one_codemod_per_tweak_id():
    from ccprof.artefacts.tweaks import TWEAKS

    ids = codemod_ids()
    assert set(ids) == set(CODEMODS)
    assert set(ids) <= set(TWEAKS)
    assert {"mixed_precision", "checkpointing", "lora", "warm_start", "grad_accumulation", "fused_optimizer",
            "tf32", "compile", "dataloader", "early_stopping", "distributed"} <= set(ids)


# ---------------------------------------------------------------- mixed_precision

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


def test_nothing_to_do_leaves_script_unchanged_with_reason():
    src = "import torch\nx = torch.ones(3)\nprint(x.sum())\n"
    result = rewrite(src, "mixed_precision", "grad_accumulation", "lora", "checkpointing")
    assert result.source == src and result.applied == [] and result.diff == ""
    assert "loss.backward()" in result.skipped["mixed_precision"]
    assert "optimizer" in result.skipped["lora"]


# ---------------------------------------------------------------- grad_accumulation

def test_grad_accumulation_plain_moves_step_and_zero_grad_under_modulo():
    after = PLAIN.replace("import torch.nn as nn\n", "import torch.nn as nn\n\n"
                          "gradient_accumulation_steps = 8  # micro-batches per optimizer step\n").replace(
        "    optimizer.zero_grad()\n    loss.backward()\n    optimizer.step()\n",
        "    (loss / gradient_accumulation_steps).backward()\n"
        "    if (step + 1) % gradient_accumulation_steps == 0:\n"
        "        optimizer.step()\n        optimizer.zero_grad()\n")
    check(PLAIN, after, "grad_accumulation", accumulation_steps=8)


def test_grad_accumulation_counts_micro_batches_without_a_loop_index():
    src = """\
    import torch
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(2):
        for x in loader:
            loss = model(x).sum()
            loss.backward()
            opt.step()
            opt.zero_grad()
    """
    out = rewrite(src, "grad_accumulation").source
    assert "micro_step = 0\nfor epoch in range(2):" in out
    assert "        micro_step += 1\n        if micro_step % gradient_accumulation_steps == 0:" in out


def test_grad_accumulation_already_and_keywords():
    src = PLAIN.replace("    optimizer.step()\n", "    if (step + 1) % 4 == 0:\n        optimizer.step()\n")
    assert rewrite(src, "grad_accumulation").already_applied == ["grad_accumulation"]
    assert "    gradient_accumulation_steps=4,\n)" in rewrite(HF, "grad_accumulation").source
    assert "accumulate_grad_batches=4" in rewrite(LIGHTNING, "grad_accumulation").source


def test_grad_accumulation_after_fp16_scales_inside_scaler():
    out = rewrite(PLAIN, "mixed_precision", "grad_accumulation", dtype="fp16").source
    assert "scaler.scale(loss / gradient_accumulation_steps).backward()" in out
    assert "        scaler.step(optimizer)\n        scaler.update()\n        optimizer.zero_grad()\n" in out


# ---------------------------------------------------------------- checkpointing

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


def test_checkpointing_custom_blocks():
    check(CUSTOM, CUSTOM.replace("from torch import nn\n", "from torch import nn\nimport torch.utils.checkpoint\n").replace(
        "x = layer(x)  # (B, 8)", "x = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False)  # (B, 8)"),
        "checkpointing")


def test_checkpointing_hf_model_and_trainer():
    src = """\
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained("gpt2")
    opt = torch.optim.AdamW(model.parameters())
    """
    out = rewrite(src, "checkpointing").source
    assert ('model = AutoModelForCausalLM.from_pretrained("gpt2")\nmodel.gradient_checkpointing_enable('
            'gradient_checkpointing_kwargs={"use_reentrant": False})\n') in out
    hf = rewrite(HF, "checkpointing").source
    assert "    gradient_checkpointing=True,\n" in hf


# ---------------------------------------------------------------- lora / warm_start

def test_lora_custom_targets_linear_attributes_and_keeps_head_trainable():
    after = CUSTOM.replace("import torch\nfrom torch import nn\n",
                           "import torch\nfrom torch import nn\nfrom peft import LoraConfig, get_peft_model\n").replace(
        "model = Net()\n", "model = Net()\nmodel = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, "
        'target_modules="all-linear", modules_to_save=["head"]))\n')
    check(CUSTOM, after, "lora", lora_rank=4)


def test_lora_options_and_hf_task_type():
    out = rewrite(CUSTOM, "lora", lora_targets="layers.0,layers.1").source
    assert 'target_modules=["layers.0", "layers.1"]' in out
    hf = rewrite(HF, "lora").source
    assert ('model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, '
            'target_modules="all-linear", task_type="CAUSAL_LM"))\ntrainer = Trainer(') in hf


def test_warm_start_freezes_embeddings_before_optimizer():
    out = check(CUSTOM, CUSTOM.replace("model = Net()\n", "model = Net()\nfor embedding in model.modules():  # frozen embeddings\n"
                                       "    if isinstance(embedding, torch.nn.Embedding):\n"
                                       "        embedding.weight.requires_grad_(False)\n"), "warm_start")
    assert out.notes
    hf = rewrite(HF, "warm_start", embeddings_path="emb.pt").source
    assert "model.get_input_embeddings().weight.data.copy_(torch.load('emb.pt'))" in hf


# ---------------------------------------------------------------- one-liners

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


def test_dataloader_keywords_guard_a_computed_worker_count():
    src = """\
    from torch.utils.data import DataLoader
    a = DataLoader(ds, batch_size=8, shuffle=True)
    b = DataLoader(ds, num_workers=args.workers)
    """
    out = rewrite(src, "dataloader", num_workers=2).source
    assert "DataLoader(ds, batch_size=8, shuffle=True, num_workers=2, pin_memory=True, persistent_workers=True)" in out
    assert "DataLoader(ds, num_workers=args.workers, pin_memory=True, persistent_workers=args.workers > 0)" in out


# ---------------------------------------------------------------- early_stopping / distributed

def test_early_stopping_plain_breaks_on_patience():
    src = """\
    import torch
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(10):
        for x in loader:
            loss = model(x).sum()
            loss.backward()
            opt.step()
        val_loss = evaluate(model)
        print(val_loss)
    """
    result = rewrite(src, "early_stopping", patience=2)
    assert "early_stopping_patience = 2" in result.source
    assert "    val_loss = evaluate(model)\n    if float(val_loss) < early_stopping_best:" in result.source
    assert "            break\n    print(val_loss)" in result.source
    assert apply_source(result.source, ["early_stopping"]).applied == []


def test_early_stopping_hf_needs_eval_dataset():
    out = rewrite(HF, "early_stopping").source
    assert "callbacks=[EarlyStoppingCallback(early_stopping_patience=3)]" in out
    assert "load_best_model_at_end=True" in out and 'eval_strategy="epoch"' in out and 'save_strategy="epoch"' in out
    assert "from transformers import EarlyStoppingCallback, LlamaConfig" in out
    no_eval = rewrite(HF.replace(", eval_dataset=val", ""), "early_stopping")
    assert "eval_dataset" in no_eval.skipped["early_stopping"] and no_eval.applied == []
    lit = rewrite(LIGHTNING, "early_stopping").source
    assert 'callbacks=[EarlyStopping(monitor="val_loss", mode="min", patience=3)]' in lit
    assert "from lightning.pytorch.callbacks import EarlyStopping" in lit


def test_distributed_plain_lightning_and_hf():
    src = """\
    import torch
    from torch.utils.data import DataLoader
    loader = DataLoader(ds, batch_size=8, shuffle=True)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(2):
        for x in loader:
            loss = model(x).sum()
            loss.backward()
            opt.step()
    """
    result = rewrite(src, "distributed")
    out = result.source
    assert "dist.init_process_group(" in out and "DistributedDataParallel(model" in out
    assert "shuffle=not ddp, sampler=DistributedSampler(ds) if ddp else None" in out
    assert "        loader.sampler.set_epoch(epoch)" in out
    assert "torchrun" in result.notes["distributed"]
    assert apply_source(out, ["distributed"]).applied == []
    assert 'strategy="ddp"' in rewrite(LIGHTNING, "distributed").source
    assert "torchrun" in rewrite(HF, "distributed").skipped["distributed"]


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
