# Tests: llm.c's train_gpt2.py pattern (karpathy/llm.c): the batch is an argparse option, a total
# batch in tokens must be a multiple of batch x sequence x processes (asserted), and the
# difference is made up by gradient accumulation.
import argparse
import os

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch_size", type=int, default=4, help="batch size, in units of #batch dimensions")
    parser.add_argument("--sequence_length", type=int, default=16, help="sequence length")
    parser.add_argument("--total_batch_size", type=int, default=128, help="total batch size, in #tokens")
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--num_iterations", type=int, default=20)
    args = parser.parse_args()
    B, T = args.batch_size, args.sequence_length
    assert 1 <= T <= 1024

    ddp = int(os.environ.get("RANK", -1)) != -1
    if ddp:
        ddp_world_size = int(os.environ["WORLD_SIZE"])
    else:
        ddp_world_size = 1

    tokens_per_fwdbwd = B * T * ddp_world_size
    assert args.total_batch_size % tokens_per_fwdbwd == 0
    grad_accum_steps = args.total_batch_size // tokens_per_fwdbwd

    torch.manual_seed(0)
    tokens = torch.randint(0, 32, (4096, T))
    loader = DataLoader(TensorDataset(tokens), batch_size=args.batch_size, shuffle=True, drop_last=True)

    def batches():
        while True:
            yield from loader

    model = nn.Sequential(nn.Embedding(32, 8), nn.Linear(8, 32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
    data = batches()
    for step in range(args.num_iterations):
        optimizer.zero_grad()
        for micro_step in range(grad_accum_steps):
            (x,) = next(data)
            loss = nn.functional.cross_entropy(model(x).view(B * T, 32), x.view(-1)) / grad_accum_steps
            loss.backward()
        optimizer.step()
