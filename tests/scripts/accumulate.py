# Tests: gradient accumulation: 4 micro-batches (4 backward passes) per optimizer.step(),
# with the step under a modulo condition.
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
accum_steps = 4
model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
centres = torch.randn(4, 16)

optimizer.zero_grad()
for micro_step in range(200 * accum_steps):
    y = torch.randint(0, 4, (8,))
    x = centres[y] + 0.5 * torch.randn(8, 16)
    loss = F.cross_entropy(model(x), y) / accum_steps
    loss.backward()
    if (micro_step + 1) % accum_steps == 0:
        optimizer.step()
        optimizer.zero_grad()
        step = (micro_step + 1) // accum_steps
        if step % 20 == 0:
            print(f"step {step}: loss {loss.item() * accum_steps:.4f}")
