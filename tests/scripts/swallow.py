# Tests: a loop that wraps every step in `try: ... except Exception: pass`; the profiler's
# stop signal must not be swallowed (it must derive from BaseException, not Exception).
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

for step in range(200):
    try:
        x = torch.randn(16, 8)
        loss = F.mse_loss(model(x), x.mean(dim=1, keepdim=True))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 20 == 0:
            print(f"step {step}: loss {loss.item():.4f}")
    except Exception:
        pass
