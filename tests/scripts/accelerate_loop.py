"""A small Hugging Face Accelerate training loop (issue 21: `ccprof apply` puts mixed precision and
accumulation on `Accelerator(...)`, and edits workers, TF32 and the batch size in the code)."""
import argparse

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
args = parser.parse_args()

accelerator = Accelerator(cpu=True)
torch.manual_seed(0)
data = TensorDataset(torch.randn(256, 32), torch.randint(0, 4, (256,)))
train_loader = DataLoader(data, batch_size=16, shuffle=True)
model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)

for epoch in range(args.epochs):
    for x, y in train_loader:
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
accelerator.print(f"done {loss.item():.4f}")
