"""Tiny real models shared by the runtime applier tests (built from configs, never downloaded)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

VOCAB, DIM, SEQ = 256, 32, 8


class Block(nn.Module):
    def __init__(self, dim: int = DIM, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:              # x: (B, T, C)
        q, k, v = self.qkv(self.ln1(x)).split(x.shape[-1], dim=-1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.drop(self.proj(a))
        return x + self.drop(self.fc2(F.gelu(self.fc1(self.ln2(x)))))


class TinyGPT(nn.Module):
    """nanoGPT-shaped: ``model(idx)`` -> logits; ``model(idx, targets)`` -> (logits, loss)."""

    def __init__(self, n_layer: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.wte = nn.Embedding(VOCAB, DIM)
        self.wpe = nn.Embedding(SEQ, DIM)
        self.blocks = nn.ModuleList(Block(DIM, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, VOCAB, bias=False)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))  # (B, T, C)
        for b in self.blocks:
            x = b(x)
        logits = self.head(self.ln_f(x))                                             # (B, T, V)
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))


class Plain(nn.Module):
    """No repeated blocks, no embedding: the "cannot apply" case."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class BasicBlock(nn.Module):
    """torchvision's ``resnet.BasicBlock``: two 3x3 convs, a 1x1 downsample where the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:                 # x: (B, C, H, W)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """torchvision's ``ResNet`` layout (stem, ``layer1``..``layer4`` of ``BasicBlock``, avgpool, fc),
    narrow: ``widths`` replaces 64/128/256/512; ``layers=(2, 2, 2, 2)`` is resnet18's depth."""

    def __init__(self, layers=(2, 2, 2, 2), widths=(8, 16, 32, 64), num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = widths[0]
        for i, (n, c) in enumerate(zip(layers, widths)):
            blocks = [BasicBlock(c_in, c, 1 if i == 0 else 2)] + [BasicBlock(c, c) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = c
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:                 # x: (B, 3, H, W)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))               # (B, classes)


def resnet18(seed: int = 0, **kw) -> ResNet:
    torch.manual_seed(seed)
    return ResNet(**kw)


def tiny_gpt(seed: int = 0, **kw) -> TinyGPT:
    torch.manual_seed(seed)
    return TinyGPT(**kw)


def tiny_llama(seed: int = 0, **kw):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, vocab_size=VOCAB, **kw)
    return LlamaForCausalLM(cfg)


def batch(n: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, VOCAB, (n, SEQ), generator=g)
    return x, torch.roll(x, -1, dims=1)


def gpt_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The user's loop computing the loss outside the model."""
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))


def grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


class _Saved:
    __slots__ = ("t", "__weakref__")

    def __init__(self, t: torch.Tensor) -> None:
        self.t = t


def saved_bytes(fn, model: nn.Module | None = None):
    """(bytes autograd still holds for backward when ``fn()`` returns, fn's result): the
    profiler's activation ledger, counting a saved tensor only while its graph is alive and
    leaving out ``model``'s parameters."""
    import weakref
    alive: weakref.WeakSet = weakref.WeakSet()

    def pack(t: torch.Tensor) -> _Saved:
        box = _Saved(t)
        alive.add(box)
        return box
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda box: box.t):
        out = fn()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()} if model is not None else set()
    seen, total = set(), 0
    for box in list(alive):
        if box.t.untyped_storage().data_ptr() in params:
            continue
        key = (box.t.untyped_storage().data_ptr(), box.t.shape, box.t.stride())
        if key not in seen:
            seen.add(key)
            total += box.t.numel() * box.t.element_size()
    return total, out
