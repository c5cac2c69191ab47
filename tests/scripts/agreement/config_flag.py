"""nanoGPT-style config globals: `--compile=True` overrides `compile = False` through exec."""
import torch

compile = False
tf32 = True
exec(open("configurator.py").read())  # noqa: S102 - overrides from the command line

if tf32:
    torch.backends.cuda.matmul.allow_tf32 = True
model = torch.nn.Linear(8, 1)
if compile:
    model = torch.compile(model)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x in [torch.randn(4, 8) for _ in range(4)]:
    loss = model(x).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
