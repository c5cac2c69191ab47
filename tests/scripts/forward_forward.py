# Tests: layers kept in a plain Python list (not nn.ModuleList), one optimizer per layer
# built over that layer's parameters, layers trained one after another (Hinton's
# Forward-Forward, as in mohammadpz/pytorch_forward_forward). The Net itself registers no
# parameter; forward is called as ``self.forward(x)``, so module hooks never fire for it.
import argparse

import torch
import torch.nn as nn

parser = argparse.ArgumentParser()
parser.add_argument("--call", choices=["forward", "module"], default="forward")
args = parser.parse_args()


class Layer(nn.Linear):
    def __init__(self, in_features, out_features):
        super().__init__(in_features, out_features)
        self.relu = nn.ReLU()
        self.opt = torch.optim.Adam(self.parameters(), lr=0.03)
        self.threshold = 2.0
        self.num_epochs = 50

    def forward(self, x):
        x_direction = x / (x.norm(2, 1, keepdim=True) + 1e-4)
        return self.relu(torch.mm(x_direction, self.weight.T) + self.bias.unsqueeze(0))

    def train_layer(self, x_pos, x_neg):
        fwd = self.forward if args.call == "forward" else self
        for _ in range(self.num_epochs):
            g_pos = fwd(x_pos).pow(2).mean(1)
            g_neg = fwd(x_neg).pow(2).mean(1)
            loss = torch.log(1 + torch.exp(torch.cat([-g_pos + self.threshold, g_neg - self.threshold]))).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        return fwd(x_pos).detach(), fwd(x_neg).detach()


class Net(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.layers = [Layer(dims[d], dims[d + 1]) for d in range(len(dims) - 1)]   # a plain list

    def train_layers(self, x_pos, x_neg):
        h_pos, h_neg = x_pos, x_neg
        for layer in self.layers:
            h_pos, h_neg = layer.train_layer(h_pos, h_neg)


torch.manual_seed(0)
net = Net([32, 64, 64])
x_pos, x_neg = torch.randn(128, 32), torch.randn(128, 32)
net.train_layers(x_pos, x_neg)
