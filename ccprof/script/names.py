"""One vocabulary of the library objects a training script may reference, by qualified name.

A qualified name is what libcst's ``QualifiedNameProvider`` resolves a reference to, so
``import torch as T; T.autocast(...)``, ``from torch.cuda.amp import autocast`` and
``from torch import amp; amp.autocast(...)`` are all ``torch....autocast``. The profiler's
static facts and the codemods both ask here (``matches("autocast", qname)``), so "the script
already has autocast" means the same to the report and to the rewrite.

Each entry has the last components its names can end with (``lasts``): a script whose text
holds none of them cannot reference it, which is known without resolving any name.

Example::

    from ccprof.script.names import matches, NAMES
    matches("grad_scaler", "torch.distributed.fsdp.sharded_grad_scaler.ShardedGradScaler")   # True
    NAMES["autocast"].lasts                                                                  # ("autocast",)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["Name", "NAMES", "matches", "root_of", "last_of", "OPTIMIZER_CLASSES", "LIGHTNING_ROOTS"]

OPTIMIZER_CLASSES = ("SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta", "Adamax", "NAdam",
                     "RAdam", "ASGD", "Rprop", "LBFGS", "SparseAdam", "Adafactor", "Muon")
LIGHTNING_ROOTS = ("lightning", "pytorch_lightning")


def root_of(qname: str) -> str:
    return qname.split(".", 1)[0]


def last_of(qname: str) -> str:
    return qname.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Name:
    """A kind of library object: ``match(qname)`` says whether a qualified name is one."""
    lasts: tuple[str, ...]
    match: Callable[[str], bool]
    doc: str = ""


def _torch_last(*lasts: str) -> Callable[[str], bool]:
    return lambda q: root_of(q) == "torch" and last_of(q) in lasts


def _exact(*names: str) -> Callable[[str], bool]:
    return lambda q: q in names


NAMES: dict[str, Name] = {
    "autocast": Name(("autocast",), _torch_last("autocast"),
                     "torch.autocast, torch.amp.autocast, torch.cuda.amp.autocast, torch.cpu.amp.autocast"),
    "grad_scaler": Name(("GradScaler", "ShardedGradScaler"), _torch_last("GradScaler", "ShardedGradScaler"),
                        "torch.amp.GradScaler, torch.cuda.amp.GradScaler, FSDP's ShardedGradScaler"),
    "checkpointing": Name(("checkpoint", "checkpoint_sequential", "checkpoint_wrapper", "apply_activation_checkpointing"),
                          lambda q: q in ("torch.utils.checkpoint.checkpoint", "torch.utils.checkpoint.checkpoint_sequential")
                          or _torch_last("checkpoint_wrapper", "apply_activation_checkpointing")(q),
                          "torch.utils.checkpoint, and FSDP's checkpoint_wrapper / apply_activation_checkpointing"),
    "early_stopping": Name(("EarlyStoppingCallback", "EarlyStopping"),
                           lambda q: last_of(q) in ("EarlyStoppingCallback", "EarlyStopping"),
                           "transformers.EarlyStoppingCallback, Lightning's and ignite's EarlyStopping"),
    "ddp": Name(("DistributedDataParallel",), _torch_last("DistributedDataParallel")),
    "fsdp": Name(("FullyShardedDataParallel", "fully_shard"), _torch_last("FullyShardedDataParallel", "fully_shard")),
    "data_parallel": Name(("DataParallel",), _torch_last("DataParallel")),
    "process_group": Name(("init_process_group",), _torch_last("init_process_group"),
                          "torch.distributed.init_process_group"),
    "compile": Name(("compile", "optimize"), _exact("torch.compile", "torch._dynamo.optimize")),
    "dataloader": Name(("DataLoader",), _torch_last("DataLoader"), "torch.utils.data.DataLoader"),
    "clip_grad": Name(("clip_grad_norm_", "clip_grad_value_"), _torch_last("clip_grad_norm_", "clip_grad_value_")),
    "optimizer": Name(OPTIMIZER_CLASSES, lambda q: q.startswith("torch.optim.") and "lr_scheduler" not in q
                      and last_of(q) in OPTIMIZER_CLASSES, "torch.optim.SGD, AdamW ..."),
    "hf_trainer": Name(("Trainer",), lambda q: root_of(q) in ("transformers", "trl") and last_of(q).endswith("Trainer"),
                       "transformers.Trainer, Seq2SeqTrainer, trl.SFTTrainer ... (not TrainerCallback)"),
    "training_arguments": Name(("TrainingArguments", "Config"),
                               lambda q: (root_of(q) == "transformers" and last_of(q).endswith("TrainingArguments"))
                               or (root_of(q) == "trl" and last_of(q).endswith("Config")),
                               "transformers.TrainingArguments, Seq2SeqTrainingArguments, trl.SFTConfig ..."),
    "lightning": Name(("Trainer", "LightningModule"),
                      lambda q: root_of(q) in LIGHTNING_ROOTS and last_of(q) in ("Trainer", "LightningModule")),
    "lightning_trainer": Name(("Trainer",), lambda q: root_of(q) in LIGHTNING_ROOTS and last_of(q) == "Trainer"),
    "accelerator": Name(("Accelerator",), lambda q: root_of(q) == "accelerate" and last_of(q) == "Accelerator"),
    "accelerate": Name(("accelerate",), lambda q: root_of(q) == "accelerate", "anything from accelerate"),
    "peft": Name(("peft",), lambda q: root_of(q) == "peft"),
}


def matches(kind: str, qname: str) -> bool:
    """Whether ``qname`` is one of the ``kind`` of objects in ``NAMES``."""
    return NAMES[kind].match(qname)
