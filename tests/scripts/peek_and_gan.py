# Tests (issue 11, misread 4): the DDP tutorial peeks at one batch with next(iter(loader));
# dcgan runs three backwards per iteration (two for D, one for G) with two optimizers.
# Neither is gradient accumulation, and the peeked batch is not a duplicate of the epoch.
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
data = TensorDataset(torch.randn(512, 16))
loader = DataLoader(data, batch_size=32, shuffle=True)
print("first batch", next(iter(loader))[0].shape)          # the peek

netG = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16))
netD = nn.Sequential(nn.Linear(16, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
crit = nn.BCEWithLogitsLoss()

for epoch in range(5):
    for (real,) in loader:
        b = real.size(0)
        netD.zero_grad()
        errD_real = crit(netD(real), torch.ones(b, 1))
        errD_real.backward()
        fake = netG(torch.randn(b, 8))
        errD_fake = crit(netD(fake.detach()), torch.zeros(b, 1))
        errD_fake.backward()
        optD.step()
        netG.zero_grad()
        errG = crit(netD(fake), torch.ones(b, 1))
        errG.backward()
        optG.step()
