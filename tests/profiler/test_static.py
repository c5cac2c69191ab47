"""Static facts read from source: each fact seen, aliased imports, negatives, bad files."""
from __future__ import annotations

import dataclasses
import textwrap

import pytest

from ccprof.artefacts.profile import Profile, StaticFacts
from ccprof.profiler.static import read_static_facts, static_facts_from_source
from tests.helpers.paths import ROOT

FACTS = [
    "autocast", "grad_scaler", "checkpointing", "accumulation", "validation",
    "early_stopping", "from_pretrained", "load_state_dict", "ddp", "fsdp", "data_parallel",
    "compile", "hf_trainer", "lightning", "peft", "tf32", "fused_optimizer", "dataloader", "float64",
]


def facts(src: str) -> StaticFacts:
    return static_facts_from_source(textwrap.dedent(src).lstrip("\n"))


def on(f: StaticFacts) -> set[str]:
    return {name for name in FACTS if getattr(f, name)}


def test_every_boolean_fact_is_a_staticfacts_field():
    fields = {f.name for f in dataclasses.fields(StaticFacts) if f.type in ("bool", bool)}
    assert set(FACTS) == fields - {"parsed"}


# (fact, source, line where the fact is first seen)
POSITIVE = [
    # autocast, by every spelling of its import
    ("autocast", """
        import torch
        with torch.autocast("cuda", dtype=torch.bfloat16):
            pass
        """, 2),
    ("autocast", """
        import torch as T
        with T.autocast(device_type="cpu"):
            pass
        """, 2),
    ("autocast", """
        from torch.cuda.amp import autocast
        with autocast():
            pass
        """, 2),
    ("autocast", """
        from torch import amp
        x = 1
        with amp.autocast("cuda"):
            pass
        """, 3),
    ("autocast", """
        from torch.cuda.amp import autocast as ac
        @ac()
        def forward(x):
            return x
        """, 2),
    ("autocast", """
        from transformers import TrainingArguments
        args = TrainingArguments(output_dir="o", bf16=True)
        """, 2),
    ("autocast", """
        import lightning as L
        trainer = L.Trainer(precision="bf16-mixed")
        """, 2),
    ("autocast", """
        from accelerate import Accelerator
        accelerator = Accelerator(mixed_precision="fp16")
        """, 2),
    # GradScaler
    ("grad_scaler", """
        import torch
        scaler = torch.cuda.amp.GradScaler()
        """, 2),
    ("grad_scaler", """
        from torch.amp import GradScaler
        scaler = GradScaler("cuda")
        """, 2),
    ("grad_scaler", """
        from transformers import TrainingArguments
        args = TrainingArguments(output_dir="o",
                                 fp16=True)
        """, 3),
    ("grad_scaler", """
        import pytorch_lightning as pl
        trainer = pl.Trainer(precision=16)
        """, 2),
    # checkpointing
    ("checkpointing", """
        import torch.utils.checkpoint as cp
        def forward(self, x):
            return cp.checkpoint(self.block, x, use_reentrant=False)
        """, 3),
    ("checkpointing", """
        from torch.utils.checkpoint import checkpoint_sequential
        y = checkpoint_sequential(model, 2, x)
        """, 2),
    ("checkpointing", """
        from torch.utils.checkpoint import checkpoint as ckpt
        y = ckpt(layer, x)
        """, 2),
    ("checkpointing", """
        model = load()
        model.gradient_checkpointing_enable()
        """, 2),
    ("checkpointing", """
        from transformers import TrainingArguments
        args = TrainingArguments("o", gradient_checkpointing=True)
        """, 2),
    # accumulation
    ("accumulation", """
        for i, batch in enumerate(loader):
            loss = model(batch) / 4
            loss.backward()
            if (i + 1) % 4 == 0:
                optimizer.step()
                optimizer.zero_grad()
        """, 5),
    ("accumulation", """
        for i, batch in enumerate(loader):
            scaler.scale(loss).backward()
            if i % accum == 0 or i == last:
                scaler.step(optimizer)
        """, 4),
    ("accumulation", """
        while True:
            for micro_step in range(gradient_accumulation_steps):
                loss = model(x)
                loss.backward()
            optimizer.step()
        """, 2),
    ("accumulation", """
        from transformers import TrainingArguments
        args = TrainingArguments("o", gradient_accumulation_steps=8)
        """, 2),
    ("accumulation", """
        from transformers import TrainingArguments
        args = TrainingArguments("o", gradient_accumulation_steps=cfg.accum)
        """, 2),
    ("accumulation", """
        from lightning.pytorch import Trainer
        trainer = Trainer(accumulate_grad_batches=4)
        """, 2),
    # validation
    ("validation", """
        model.train()
        for epoch in range(3):
            train_one_epoch()
            model.eval()
        """, 4),
    ("validation", """
        @torch.no_grad()
        def estimate_loss():
            return 0.0
        """, 2),
    ("validation", """
        from transformers import TrainingArguments
        args = TrainingArguments("o", evaluation_strategy="epoch")
        """, 2),
    ("validation", """
        from transformers import TrainingArguments
        args = TrainingArguments("o", eval_strategy="steps", eval_steps=50)
        """, 2),
    ("validation", """
        metrics = trainer.evaluate()
        """, 1),
    ("validation", """
        class Lit:
            def validation_step(self, batch, idx):
                return 0
        """, 2),
    # early stopping
    ("early_stopping", """
        from transformers import EarlyStoppingCallback
        callbacks = [EarlyStoppingCallback(early_stopping_patience=3)]
        """, 2),
    ("early_stopping", """
        from lightning.pytorch.callbacks import EarlyStopping
        es = EarlyStopping(monitor="val_loss")
        """, 2),
    ("early_stopping", """
        best, bad_epochs = 1e9, 0
        for epoch in range(100):
            val = evaluate()
            if val < best:
                best, bad_epochs = val, 0
            else:
                bad_epochs += 1
            if bad_epochs >= patience:
                break
        """, 8),
    # weights loaded
    ("from_pretrained", """
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained("gpt2")
        """, 2),
    ("from_pretrained", """
        import transformers as tf
        model = tf.BertModel.from_pretrained(path)
        """, 2),
    ("load_state_dict", """
        import torch
        model.load_state_dict(torch.load("ckpt.pt"))
        """, 2),
    # distribution
    ("ddp", """
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(model, device_ids=[rank])
        """, 2),
    ("ddp", """
        import torch.nn as nn
        model = nn.parallel.DistributedDataParallel(model)
        """, 2),
    ("ddp", """
        import lightning as L
        trainer = L.Trainer(strategy="ddp_find_unused_parameters_true")
        """, 2),
    ("fsdp", """
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        model = FSDP(model)
        """, 2),
    ("fsdp", """
        from torch.distributed.fsdp import fully_shard
        fully_shard(model)
        """, 2),
    ("fsdp", """
        from transformers import TrainingArguments
        args = TrainingArguments("o", fsdp="full_shard auto_wrap")
        """, 2),
    ("data_parallel", """
        import torch
        model = torch.nn.DataParallel(model)
        """, 2),
    # compile
    ("compile", """
        import torch
        model = torch.compile(model, mode="max-autotune")
        """, 2),
    ("compile", """
        from torch import compile as tc
        @tc
        def step(x):
            return x
        """, 2),
    ("compile", """
        model = Net()
        model.compile()
        """, 2),
    ("compile", """
        from transformers import TrainingArguments
        args = TrainingArguments("o", torch_compile=True)
        """, 2),
    # frameworks
    ("hf_trainer", """
        from transformers import Trainer
        trainer = Trainer(model=model, args=args)
        """, 2),
    ("hf_trainer", """
        import transformers
        class MyTrainer(transformers.Trainer):
            pass
        """, 2),
    ("hf_trainer", """
        from trl import SFTTrainer
        trainer = SFTTrainer(model=model)
        """, 2),
    ("lightning", """
        import lightning as L
        trainer = L.Trainer(max_epochs=1)
        """, 2),
    ("lightning", """
        import pytorch_lightning as pl
        class Lit(pl.LightningModule):
            pass
        """, 2),
    ("peft", """
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=8))
        """, 2),
    ("peft", """
        from trl import SFTTrainer
        trainer = SFTTrainer(model=model, peft_config=lora)
        """, 2),
    # float64: what makes the model float64, before tensors created so
    ("float64", """
        import torch
        x = torch.randn(8, 4, dtype=torch.float64)
        model = torch.nn.Linear(4, 1).double()
        """, 3),
    ("float64", """
        import torch as T
        T.set_default_dtype(T.float64)
        """, 2),
    ("float64", """
        import torch
        layer = torch.nn.Linear(4, 1, dtype=torch.double)
        """, 2),
    ("float64", """
        import torch
        x = torch.zeros(3, dtype=torch.float64)
        """, 2),
]


@pytest.mark.parametrize("fact,src,line", POSITIVE, ids=[f"{p[0]}-{i}" for i, p in enumerate(POSITIVE)])
def test_fact_seen_with_its_first_line(fact, src, line):
    f = facts(src)
    assert f.parsed and f.note is None
    assert getattr(f, fact) is True
    assert f.lines[fact] == line


# (fact that must NOT be seen, source that looks close)
NEGATIVE = [
    ("autocast", """
        def autocast():          # the user's own function, not torch's
            return None
        with autocast():
            pass
        """),
    ("autocast", """
        import torch
        x = torch.randn(2).half()
        """),
    ("autocast", """
        from transformers import TrainingArguments
        args = TrainingArguments("o", fp16=False, bf16=args.bf16)
        """),
    ("autocast", """
        import lightning as L
        trainer = L.Trainer(precision="32-true")
        """),
    ("grad_scaler", """
        from transformers import TrainingArguments
        args = TrainingArguments("o", bf16=True)
        """),
    ("checkpointing", """
        import torch
        torch.save(model.state_dict(), "checkpoint.pt")
        def checkpoint(model):
            pass
        checkpoint(model)
        """),
    ("checkpointing", """
        from transformers import TrainingArguments
        args = TrainingArguments("o", gradient_checkpointing=False)
        """),
    ("accumulation", """
        for step, batch in enumerate(loader):
            loss.backward()
            optimizer.step()
            if step % 100 == 0:
                print(loss.item())
        """),
    ("accumulation", """
        for epoch in range(90):
            train()
            if epoch % 30 == 29:
                lr_scheduler.step()
                scheduler.step()
        """),
    ("accumulation", """
        for micro_step in range(200 * accum_steps):
            loss.backward()
            optimizer.step()
        """),
    ("accumulation", """
        from transformers import TrainingArguments
        args = TrainingArguments("o", gradient_accumulation_steps=1)
        """),
    ("validation", """
        result = eval("1 + 1")
        """),
    ("validation", """
        from transformers import TrainingArguments
        args = TrainingArguments("o", eval_strategy="no")
        """),
    ("early_stopping", """
        for epoch in range(10):
            if loss < 0.1:
                print("good")
        """),
    ("from_pretrained", """
        from transformers import AutoTokenizer, AutoConfig, LlamaForCausalLM
        tok = AutoTokenizer.from_pretrained("gpt2")
        cfg = AutoConfig.from_pretrained("gpt2")
        model = LlamaForCausalLM(cfg)
        """),
    ("compile", """
        import re
        pattern = re.compile(r"\\d+")
        """),
    ("ddp", """
        import torch.distributed as dist
        dist.init_process_group("gloo")
        """),
    ("data_parallel", """
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(model)
        """),
    ("hf_trainer", """
        from transformers import TrainerCallback, TrainingArguments
        class CB(TrainerCallback):
            pass
        """),
    ("lightning", """
        from transformers import Trainer
        trainer = Trainer(model=model)
        """),
    ("peft", """
        from transformers import AutoModel
        model = AutoModel.from_pretrained("bert-base-uncased")
        """),
    # an import alone is not use
    ("autocast", """
        from torch.cuda.amp import autocast
        """),
]


@pytest.mark.parametrize("fact,src", NEGATIVE, ids=[f"{n[0]}-{i}" for i, n in enumerate(NEGATIVE)])
def test_lookalike_is_not_the_fact(fact, src):
    f = facts(src)
    assert f.parsed
    assert getattr(f, fact) is False
    assert fact not in f.lines


def test_plain_loop_has_no_facts():
    f = facts("""
        import torch
        import torch.nn as nn
        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(100):
            loss = model(torch.randn(8, 4)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        """)
    assert f == StaticFacts()


def test_training_arguments_literal_keywords():
    f = facts("""
        from transformers import TrainingArguments as TA
        args = TA(
            output_dir=tmp,              # not a literal: left out
            per_device_train_batch_size=8,
            learning_rate=-3e-4 * -1 if False else 5e-5,
            weight_decay=0.01,
            fp16=True,
            report_to="none",
            save_strategy="no",
            max_steps=-1,
            optim=None,
            fsdp_config={"min_num_params": 1000},
            label_names=("labels",),
        )
        """)
    assert f.training_args == {
        "per_device_train_batch_size": 8,
        "weight_decay": 0.01,
        "fp16": True,
        "report_to": "none",
        "save_strategy": "no",
        "max_steps": -1,
        "optim": None,
        "fsdp_config": {"min_num_params": 1000},
        "label_names": ["labels"],          # tuples become lists, as after JSON
    }
    assert f.lines["training_args"] == 2
    assert f.autocast and f.grad_scaler


def test_lightning_trainer_keywords_go_to_training_args():
    f = facts("""
        from pytorch_lightning import Trainer
        trainer = Trainer(max_epochs=3, precision="16-mixed", accumulate_grad_batches=2,
                          devices=2, strategy="ddp")
        """)
    assert f.training_args == {"max_epochs": 3, "precision": "16-mixed",
                               "accumulate_grad_batches": 2, "devices": 2, "strategy": "ddp"}
    assert on(f) == {"lightning", "autocast", "grad_scaler", "accumulation", "ddp"}
    assert f.lines["accumulation"] == 2


def test_first_training_arguments_value_wins_and_other_calls_are_ignored():
    f = facts("""
        from transformers import TrainingArguments
        import torch
        opt = torch.optim.AdamW(params, lr=1e-3)
        a = TrainingArguments("o", learning_rate=1e-4)
        b = TrainingArguments("o", learning_rate=2e-4)
        """)
    assert f.training_args == {"learning_rate": 1e-4}


def test_module_import_alias_of_submodule():
    f = facts("""
        import torch.cuda.amp as tamp
        import torch.nn.parallel as par
        scaler = tamp.GradScaler()
        with tamp.autocast():
            m = par.DistributedDataParallel(m)
        """)
    assert on(f) == {"grad_scaler", "autocast", "ddp"}
    assert f.lines == {"grad_scaler": 3, "autocast": 4, "ddp": 5}


def test_lines_keep_the_first_occurrence():
    f = facts("""
        import torch
        model.eval()
        model.train()
        model.eval()
        """)
    assert f.lines == {"validation": 2}


def test_syntax_error_names_the_line():
    f = read_static_facts(ROOT / "tests" / "scripts" / "syntax_error.py")
    assert f.parsed is False
    assert "line 8" in f.note
    assert "syntax_error.py" in f.note
    assert f.lines == {} and not on(f)


def test_source_that_does_not_parse_does_not_raise():
    f = static_facts_from_source("x = (1,\ny = 2\n", filename="train.py")
    assert f.parsed is False
    assert f.note.startswith("train.py does not parse")
    assert "line 1" in f.note


def test_missing_file_does_not_raise(tmp_path):
    f = read_static_facts(tmp_path / "nope.py")
    assert f.parsed is False
    assert "cannot read" in f.note


def test_round_trips_through_profile_json():
    f = facts("""
        from transformers import TrainingArguments, Trainer
        args = TrainingArguments("o", fp16=True, label_names=("labels",), eval_strategy="epoch")
        trainer = Trainer(model=m, args=args)
        """)
    p = Profile(static=f)
    assert Profile.from_json(p.to_json()).static == f


# what the shipped examples and edge-case scripts say about themselves
SHIPPED = {
    "examples/gpt_loop.py": {"validation"},
    "examples/hf_trainer.py": {"hf_trainer", "validation"},
    "examples/cnn.py": {"validation"},
    "examples/finetune.py": {"load_state_dict"},
    "tests/scripts/accumulate.py": {"accumulation"},
    "tests/scripts/manual_sgd.py": set(),
    "tests/scripts/gan.py": set(),
    "tests/scripts/swallow.py": set(),
}


@pytest.mark.parametrize("rel", sorted(SHIPPED))
def test_shipped_scripts(rel):
    f = read_static_facts(ROOT / rel)
    assert f.parsed
    assert on(f) == SHIPPED[rel]


def test_hf_trainer_example_training_args():
    f = read_static_facts(ROOT / "examples" / "hf_trainer.py")
    assert f.training_args["save_strategy"] == "no"
    assert f.training_args["report_to"] == "none"
    assert f.training_args["eval_strategy"] == "steps"
    assert "max_steps" not in f.training_args      # `max_steps=args.steps` is not a literal


def test_reconcile_runtime_wins_and_keeps_the_line():
    from ccprof.profiler.static import reconcile

    src = ("import torch\n"
           "compile = False\n"
           "model = torch.nn.Linear(2, 2)\n"
           "if compile:\n"
           "    model = torch.compile(model)\n")
    facts = static_facts_from_source(src)
    assert facts.compile and facts.lines["compile"] == 5
    # the run showed no compile (the flag was off) and a GradScaler a library created
    after = reconcile(facts, {"compile": False, "grad_scaler": True})
    assert not after.compile and after.inactive == {"compile": 5}
    assert after.grad_scaler
    assert reconcile(facts, {"compile": True}) is facts          # nothing to change
    with pytest.raises(ValueError):
        reconcile(facts, {"validation": False})                 # not observed at run time


def test_a_fact_on_only_on_cuda_is_kept_when_a_cpu_run_did_not_show_it():
    """issue 20: `enabled=device_type == "cuda"` holds for the target GPU; a CPU run not autocasting
    does not turn the fact off."""
    from ccprof.profiler.static import reconcile

    src = ("import torch\n"
           "device_type = 'cuda' if torch.cuda.is_available() else 'cpu'\n"
           "with torch.autocast(device_type, enabled=device_type == 'cuda'):\n"
           "    pass\n")
    f = static_facts_from_source(src)
    assert f.autocast and f.on_cuda == {"autocast": f.what["autocast"]} and f.lines["autocast"] == 3
    assert "reads the device" in f.behind["autocast"]
    assert reconcile(f, {"autocast": False}).autocast


def test_autocast_on_only_on_cuda_is_already_applied_for_mixed_precision():
    from ccprof.advisors import advise_one
    from tests.helpers.profiles import hand_profile

    src = ("import torch\n"
           "device_type = 'cuda' if torch.cuda.is_available() else 'cpu'\n"
           "with torch.autocast(device_type, enabled=device_type == 'cuda'):\n"
           "    pass\n")
    a = advise_one("mixed_precision", dataclasses.replace(hand_profile(), static=static_facts_from_source(src)))
    assert a.status == "already_applied" and "when the device is CUDA (line 3" in a.rationale
