# Tests: a script that never trains: only forwards under torch.no_grad(), no backward and no
# optimizer (the profiler must report "no training", not hang waiting for a step).
import torch
import torch.nn as nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 10))
model.eval()
correct = 0
with torch.no_grad():
    for batch in range(200):
        x = torch.randn(32, 16)
        pred = model(x).argmax(dim=1)
        correct += int((pred == 0).sum())
        if batch % 50 == 0:
            print(f"batch {batch}: {correct} predicted class 0 so far")
print("inference done")
