"""The tweak catalog: one id names the same thing everywhere (advisor, applier, codemod,
test file, report anchor)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TweakInfo", "TWEAKS", "TWELVE", "MORE"]


@dataclass(frozen=True)
class TweakInfo:
    id: str
    title: str
    summary: str
    risk: str           # none | numerics | convergence | accuracy


TWELVE = ("finetune", "lora", "warm_start", "checkpointing", "mixed_precision",
          "grad_accumulation", "distillation", "pruning", "quantization", "early_stopping",
          "data_curation", "distributed")
MORE = ("tf32", "compile", "fused_optimizer", "dataloader", "batch_size", "right_size_gpu")

TWEAKS: dict[str, TweakInfo] = {t.id: t for t in (
    TweakInfo("finetune", "Fine-tune a pretrained model instead of training from scratch",
              "Start from published weights of the same family; train for a fraction of the steps.", "accuracy"),
    TweakInfo("lora", "LoRA adapters instead of full fine-tuning",
              "Freeze the base weights; train low-rank adapters on the Linear layers.", "accuracy"),
    TweakInfo("warm_start", "Warm-start (and freeze) embeddings",
              "Load pretrained embedding vectors and stop training them.", "convergence"),
    TweakInfo("checkpointing", "Gradient (activation) checkpointing",
              "Keep only block boundaries; recompute the rest in backward.", "none"),
    TweakInfo("mixed_precision", "Mixed precision (bf16/fp16 autocast)",
              "Run matmuls and convolutions in 16-bit with fp32 master weights.", "numerics"),
    TweakInfo("grad_accumulation", "Gradient accumulation",
              "Reach the wanted batch with smaller micro-batches that fit in memory.", "none"),
    TweakInfo("distillation", "Distill into a smaller student",
              "Train a shallower model on the teacher's soft labels.", "accuracy"),
    TweakInfo("pruning", "Pruning (structured, 2:4)",
              "Remove channels/heads, or use 2:4 sparsity on tensor cores.", "accuracy"),
    TweakInfo("quantization", "Quantize frozen weights (int8 / 4-bit)",
              "Store frozen base weights in 8 or 4 bits (QLoRA style).", "accuracy"),
    TweakInfo("early_stopping", "Early stopping on the validation loss",
              "Stop when the validation loss has not improved for a patience window.", "convergence"),
    TweakInfo("data_curation", "Data curation (deduplication)",
              "Drop exact and near-duplicate examples; spend steps on new data.", "convergence"),
    TweakInfo("distributed", "Distributed training (DDP / FSDP)",
              "Use every visible GPU with DDP, or shard model state with FSDP.", "none"),
    TweakInfo("tf32", "TF32 matmuls", "Let fp32 matmuls use TF32 tensor cores (Ampere+).", "numerics"),
    TweakInfo("compile", "torch.compile", "Fuse kernels and cut Python overhead.", "none"),
    TweakInfo("fused_optimizer", "Fused / foreach optimizer",
              "One kernel for the whole parameter update.", "none"),
    TweakInfo("dataloader", "DataLoader workers and pinned memory",
              "Hide data loading behind compute.", "none"),
    TweakInfo("batch_size", "Larger batch in the memory headroom",
              "Fill the device to raise utilization.", "convergence"),
    TweakInfo("right_size_gpu", "Right-size the GPU",
              "A cheaper GPU that fits the job finishes the run for fewer dollars.", "none"),
)}
