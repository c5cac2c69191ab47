# Tests (issue 20): a script that loads GPT-2's published weights only under `--model gpt2`; this
# run trains a toy GPT-2 from scratch (`--model tiny`, the default). finetune must say "run with
# --model gpt2", not "matches no pretrained family" and not "already applied". The gpt2 branch
# never runs in the tests (no download).
import argparse

import torch
from transformers import GPT2Config, GPT2LMHeadModel

p = argparse.ArgumentParser()
p.add_argument("--model", default="tiny", choices=["tiny", "gpt2"])
p.add_argument("--steps", type=int, default=20)
args = p.parse_args()

torch.manual_seed(0)
if args.model == "gpt2":
    model = GPT2LMHeadModel.from_pretrained("gpt2")
else:
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1024, n_positions=64,
                                       bos_token_id=0, eos_token_id=0))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for step in range(args.steps):
    ids = torch.randint(0, model.config.vocab_size, (4, 16))
    loss = model(input_ids=ids, labels=ids).loss
    opt.zero_grad()
    loss.backward()
    opt.step()
