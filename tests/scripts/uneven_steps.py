# Tests: steps whose CPU time alternates (every other step does extra Python work), so their
# spread is wide and ccprof times more steps than asked; the loop ends after exactly STEPS
# optimizer steps (argv[1]), while ccprof may still want more.
import sys

import torch
import torch.nn as nn

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
torch.manual_seed(0)
model = nn.Linear(8, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(16, 8), torch.randn(16, 1)
for step in range(STEPS):
    if step % 2:
        busy = sum(i * i for i in range(20000))      # the loop's own Python, every other step
    loss = ((model(x) - y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
print("done", STEPS)
