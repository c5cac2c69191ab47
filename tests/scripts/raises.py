# Tests: the script raises ValueError("bad shape") at step 5 from a helper function; the
# profiler must report the user's error with its file and line (in check_batch below).
import torch
import torch.nn as nn
import torch.nn.functional as F


def check_batch(x, step):
    if step == 5:
        raise ValueError("bad shape")
    return x


torch.manual_seed(0)
model = nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
for step in range(200):
    x = check_batch(torch.randn(16, 8), step)
    loss = F.mse_loss(model(x), x.sum(dim=1, keepdim=True))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(f"step {step}: loss {loss.item():.4f}")
