"""A plain training loop over a Llama- (or Phi-) architecture model built from its config (no
download), the way a user would write it: bf16 weights, optional gradient checkpointing, optional LoRA via peft,
AdamW, a fixed batch x sequence of token ids. bench/scale_accuracy.py dry-runs it at the sizes of
published measurements (bench/data/published_scale.toml)."""
import argparse

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PhiConfig, PhiForCausalLM

parser = argparse.ArgumentParser()
parser.add_argument("--arch", choices=["llama", "phi"], default="llama")
parser.add_argument("--layers", type=int, required=True)
parser.add_argument("--hidden", type=int, required=True)
parser.add_argument("--intermediate", type=int, required=True)
parser.add_argument("--heads", type=int, required=True)
parser.add_argument("--kv-heads", type=int, required=True)
parser.add_argument("--vocab", type=int, required=True)
parser.add_argument("--seq", type=int, required=True, help="tokens per sample")
parser.add_argument("--batch", type=int, required=True, help="samples per step on this GPU")
parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16", help="weights' dtype (pure bf16, no autocast)")
parser.add_argument("--checkpointing", action="store_true", help="model.gradient_checkpointing_enable()")
parser.add_argument("--lora-rank", type=int, default=0, help="0: full fine-tune")
parser.add_argument("--lora-alpha", type=int, default=16)
parser.add_argument("--lora-dropout", type=float, default=0.0)
parser.add_argument("--lora-targets", default="q_proj,v_proj")
parser.add_argument("--fused-adamw", action="store_true")
parser.add_argument("--steps", type=int, default=100)
args = parser.parse_args()

shape = dict(hidden_size=args.hidden, intermediate_size=args.intermediate, num_hidden_layers=args.layers,
             num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, vocab_size=args.vocab,
             max_position_embeddings=max(4096, args.seq), tie_word_embeddings=False)
if args.arch == "phi":  # phi-1.5: half the head dims rotated, biases, parallel attention + MLP
    # GELU (tanh) as one F.gelu(approximate="tanh") op, as LitGPT's phi-1_5 config runs it; transformers'
    # default "gelu_new" is the same function written as 8 elementwise ops, several saving a tensor
    model = PhiForCausalLM(PhiConfig(**shape, partial_rotary_factor=0.5, hidden_act="gelu_pytorch_tanh"))
else:
    model = LlamaForCausalLM(LlamaConfig(**shape))
if args.dtype == "bf16":
    model = model.to(torch.bfloat16)
if args.checkpointing:
    model.gradient_checkpointing_enable()
if args.lora_rank:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(model, LoraConfig(r=args.lora_rank, lora_alpha=args.lora_alpha,
                                             lora_dropout=args.lora_dropout,
                                             target_modules=args.lora_targets.split(",")),
                           autocast_adapter_dtype=False)  # adapters in the model's dtype (bf16), not upcast
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=3e-4, weight_decay=0.01, fused=args.fused_adamw or None)

for step in range(args.steps):
    x = torch.randint(0, args.vocab, (args.batch, args.seq))  # (B, T) token ids
    loss = model(input_ids=x, labels=x).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if step % 10 == 0:
        print(f"step {step} loss {loss.item():.3f}")
