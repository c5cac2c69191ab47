"""A tiny GPT-2 trained by transformers' Trainer on an in-memory dataset, on the CPU.

Run as a script (``ccprof analyze``) or called in-process with callbacks (tests/integrations)."""
import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n=64, seq=16, vocab=128):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab, (n, seq), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def main(out_dir="hf-tiny-out", max_steps=14, callbacks=None, report_to=()):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=128, n_positions=32))
    args = TrainingArguments(output_dir=out_dir, max_steps=max_steps, per_device_train_batch_size=4,
                             learning_rate=1e-3, use_cpu=True, report_to=list(report_to), logging_steps=5,
                             save_strategy="no", disable_tqdm=True, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(), callbacks=callbacks)
    trainer.train()
    return trainer


if __name__ == "__main__":
    main(out_dir=sys.argv[1] if len(sys.argv) > 1 else "hf-tiny-out")
