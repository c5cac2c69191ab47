"""Sites test: a module global `batch_size = 8` overridden nanoGPT-style (--batch_size=4 through an
exec()'d configurator); a GAN's two models G and D, each with its optimizer."""
import os

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

batch_size = 8
lr = 2e-4
exec(open(os.path.join(os.path.dirname(__file__), "configurator.py")).read())

torch.manual_seed(0)
loader = DataLoader(TensorDataset(torch.randn(128, 6)), batch_size=batch_size, shuffle=True)
G = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 6))
D = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
opt_g = torch.optim.Adam(G.parameters(), lr=lr)
opt_d = torch.optim.Adam(D.parameters(), lr=lr)
bce = nn.BCEWithLogitsLoss()
for epoch in range(3):
    for (real,) in loader:
        fake = G(torch.randn(real.shape[0], 3))
        d_loss = bce(D(real), torch.ones(real.shape[0], 1)) + bce(D(fake.detach()), torch.zeros(real.shape[0], 1))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = bce(D(fake), torch.ones(real.shape[0], 1))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
