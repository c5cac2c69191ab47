"""Train a tiny Llama from scratch with the Hugging Face Trainer.

The model is ``LlamaForCausalLM`` built from a small ``LlamaConfig`` (nothing is
downloaded). The data are synthetic token sequences with a learnable rule (each sequence
counts up from a random start with a random stride, modulo the vocabulary), so the loss
falls quickly. Checkpoints are not saved; the output folder is a temporary directory.

Run it:      python examples/hf_trainer.py --steps 60
Profile it:  ccprof analyze examples/hf_trainer.py -- --steps 300 --batch-size 8
"""
import argparse
import tempfile

import torch
from torch.utils.data import Dataset
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments


class CountingDataset(Dataset):
    """Sequences like 17, 20, 23, ... (mod vocab): the next token follows from the last two."""

    def __init__(self, n_samples, seq_len, vocab_size, seed=0):
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, vocab_size, (n_samples, 1), generator=g)
        stride = torch.randint(1, 8, (n_samples, 1), generator=g)
        self.input_ids = (start + stride * torch.arange(seq_len)) % vocab_size  # (N, T)

    def __len__(self):
        return len(self.input_ids)

    def __getitem__(self, i):
        ids = self.input_ids[i]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=256)
    parser.add_argument("--logging-steps", type=int, default=10)
    parser.add_argument("--eval-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    config = LlamaConfig(
        hidden_size=args.hidden_size,
        intermediate_size=2 * args.hidden_size,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=args.vocab_size,
        max_position_embeddings=max(128, args.seq_len),
    )
    model = LlamaForCausalLM(config)
    print(f"{model.num_parameters() / 1e6:.2f}M parameters")

    train_dataset = CountingDataset(2048, args.seq_len, args.vocab_size, seed=args.seed)
    eval_dataset = CountingDataset(64, args.seq_len, args.vocab_size, seed=args.seed + 1)

    with tempfile.TemporaryDirectory() as output_dir:
        training_args = TrainingArguments(
            output_dir=output_dir,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=args.batch_size,
            learning_rate=args.lr,
            weight_decay=0.01,
            warmup_steps=10,
            lr_scheduler_type="cosine",
            logging_steps=args.logging_steps,
            eval_strategy="steps",
            eval_steps=args.eval_steps,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
            seed=args.seed,
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
        )
        trainer.train()

    for record in trainer.state.log_history:
        if "loss" in record:
            print(f"step {record['step']}: loss {record['loss']:.4f}")
        elif "eval_loss" in record:
            print(f"step {record['step']}: val loss {record['eval_loss']:.4f}")


if __name__ == "__main__":
    main()
