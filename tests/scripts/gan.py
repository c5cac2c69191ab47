# Tests: two models and two optimizers stepping alternately (a GAN): generator and
# discriminator, each with its own Adam; two optimizer steps per training iteration.
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
latent, data_dim = 8, 2
generator = nn.Sequential(nn.Linear(latent, 32), nn.ReLU(), nn.Linear(32, data_dim))
discriminator = nn.Sequential(nn.Linear(data_dim, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3, betas=(0.5, 0.999))
opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-3, betas=(0.5, 0.999))


def real_batch(n):
    # points on a ring of radius 2
    angle = 2 * torch.pi * torch.rand(n)
    return torch.stack([2 * angle.cos(), 2 * angle.sin()], dim=1) + 0.05 * torch.randn(n, 2)


for step in range(200):
    real = real_batch(64)
    fake = generator(torch.randn(64, latent))

    # discriminator step
    d_loss = F.binary_cross_entropy_with_logits(discriminator(real), torch.ones(64, 1)) + \
        F.binary_cross_entropy_with_logits(discriminator(fake.detach()), torch.zeros(64, 1))
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()

    # generator step
    g_loss = F.binary_cross_entropy_with_logits(discriminator(fake), torch.ones(64, 1))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()

    if step % 20 == 0:
        print(f"step {step}: d_loss {d_loss.item():.4f} g_loss {g_loss.item():.4f}")
