"""A plain training loop over a Llama built from its config (no download): the script
bench/dry_run_scale.py and tests/e2e/test_dry_run_scale.py analyze (dry, and for real when tiny).

    python tests/scripts/llama_loop.py --hidden 4096 --intermediate 14336 --layers 32 \
        --heads 32 --kv-heads 8 --vocab 128256 --batch 1 --seq 2048 --dtype bfloat16

Weights in --dtype (bf16 by default), AdamW, random token batches; the loss is the model's own
(labels = input_ids, shifted inside LlamaForCausalLM).
"""
import argparse

import torch
from transformers import LlamaConfig, LlamaForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--hidden", type=int, default=4096)
p.add_argument("--intermediate", type=int, default=14336)
p.add_argument("--layers", type=int, default=32)
p.add_argument("--heads", type=int, default=32)
p.add_argument("--kv-heads", type=int, default=8)
p.add_argument("--vocab", type=int, default=128256)
p.add_argument("--batch", type=int, default=1)
p.add_argument("--seq", type=int, default=2048)
p.add_argument("--dtype", default="bfloat16")
p.add_argument("--steps", type=int, default=20)
args = p.parse_args()

config = LlamaConfig(hidden_size=args.hidden, intermediate_size=args.intermediate,
                     num_hidden_layers=args.layers, num_attention_heads=args.heads,
                     num_key_value_heads=args.kv_heads, vocab_size=args.vocab,
                     max_position_embeddings=max(args.seq, 2048), tie_word_embeddings=False,
                     attn_implementation="sdpa")
model = LlamaForCausalLM(config).to(getattr(torch, args.dtype))
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

for step in range(args.steps):
    ids = torch.randint(0, args.vocab, (args.batch, args.seq))      # (B, T)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    print(f"step {step} loss {loss.item():.3f}")
