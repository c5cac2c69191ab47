"""A plain loop over a tiny Llama that reads values the way training scripts do: a loss printed
with .item(), a NaN guard, a DataLoader with workers. --dry-run runs it on fake tensors."""
import argparse
import math

import torch
from torch.utils.data import DataLoader, Dataset
from transformers import LlamaConfig, LlamaForCausalLM

parser = argparse.ArgumentParser()
parser.add_argument("--hidden", type=int, default=64)
parser.add_argument("--layers", type=int, default=2)
parser.add_argument("--nonzero", action="store_true", help="take a shape from the model's outputs (unsupported dry)")
args = parser.parse_args()


class Tokens(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        return torch.randint(0, 256, (32,))


cfg = LlamaConfig(hidden_size=args.hidden, intermediate_size=2 * args.hidden, num_hidden_layers=args.layers,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=256, max_position_embeddings=64)
model = LlamaForCausalLM(cfg)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
loader = DataLoader(Tokens(), batch_size=4, num_workers=2)
for epoch in range(10):
    for x in loader:
        if args.nonzero:    # keep the rows the model scores positive: a shape only values give
            with torch.no_grad():
                x = x[torch.nonzero(model(input_ids=x).logits[:, 0, 0] > 0).flatten()]
        loss = model(input_ids=x, labels=x).loss
        if torch.isnan(loss):
            raise RuntimeError("loss is NaN")
        loss.backward()
        opt.step()
        opt.zero_grad()
        print(f"loss {loss.item():.3f} ppl {math.exp(loss.item()):.1f}")
