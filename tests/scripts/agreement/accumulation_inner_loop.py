"""Accumulation: backward over micro-batches in a loop of its own, one step after it."""
import torch

model = torch.nn.Linear(8, 1)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
for it in range(4):
    for micro in range(2):
        loss = model(torch.randn(4, 8)).pow(2).mean() / 2
        loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
