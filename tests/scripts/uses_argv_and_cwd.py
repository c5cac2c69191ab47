# Tests: the script runs as __main__, imports mylib.py from its own folder, sees only its own
# arguments in sys.argv[1:], and writes a file relative to the (unchanged) cwd.
import sys

assert __name__ == "__main__", f"__name__ is {__name__!r}"

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import mylib  # noqa: E402  (lives next to this script)

print("argv:", sys.argv[1:])
with open("uses_argv_and_cwd.out", "w") as f:
    f.write(" ".join(sys.argv[1:]) + "\n")

torch.manual_seed(0)
model = mylib.make_model()
optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
for step in range(200):
    x = torch.randn(16, 4)
    loss = F.mse_loss(model(x), x.sum(dim=1, keepdim=True))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 20 == 0:
        print(f"step {step}: loss {loss.item():.4f}")
