"""Per-module attribution of a step's FLOPs and bytes (FlopPass, ``Flops.by_module``,
``OpCost.modules``): each op lands on the module that owns it, forward and backward.

The defect these guard: torch's ModuleTracker keeps a module "in backward" until every one of
its inputs' gradients is in, so siblings that share an input (q/k/v, gate/up) or a Dropout next
to a residual absorbed one another's gradient GEMMs, and identical blocks got different FLOPs.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ccprof.artefacts.profile import Flops, ModuleStat, Profile
from ccprof.profiler.flops import FlopPass
from tests.helpers.profiles import cnn_plain, gpt_plain, llama_plain

B, S, D, V, L = 4, 16, 32, 50, 3
T = B * S                               # rows every Linear sees


class _Attn(nn.Module):
    """q, k and v read the same input; a Dropout follows the output projection."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.proj = (nn.Linear(D, D) for _ in range(4))
        self.drop = nn.Dropout(0.1)

    def forward(self, x):                                                    # x: (B, S, D)
        att = torch.softmax(self.q(x) @ self.k(x).transpose(-1, -2), -1)     # (B, S, S)
        return self.drop(self.proj(att @ self.v(x)))


class _Block(nn.Module):
    def __init__(self, ckpt: bool = False) -> None:
        super().__init__()
        self.ln, self.attn = nn.LayerNorm(D), _Attn()
        self.fc, self.drop = nn.Linear(D, D), nn.Dropout(0.1)
        self.ckpt = ckpt

    def _body(self, x):
        x = x + self.attn(self.ln(x))
        return x + self.drop(self.fc(x))

    def forward(self, x):
        return checkpoint(self._body, x, use_reentrant=False) if self.ckpt else self._body(x)


class _Net(nn.Module):
    def __init__(self, ckpt: bool = False) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.blocks = nn.ModuleList(_Block(ckpt) for _ in range(L))
        self.head = nn.Linear(D, V)

    def forward(self, ids):
        x = self.emb(ids)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def _step(model: nn.Module, regularize: bool = False) -> tuple[Flops, list, FlopPass]:
    torch.manual_seed(0)
    ids = torch.randint(0, V, (B, S))
    fp = FlopPass({"": model})
    fp.start()
    fp.set_phase("forward")
    loss = F.cross_entropy(model(ids).flatten(0, 1), ids.flatten())
    if regularize:                      # a matmul of the script's own, outside every module
        w = model.head.weight
        loss = loss + 1e-3 * (w @ w.T).sum()
    fp.set_phase("backward")
    loss.backward()
    flops, ops = fp.stop()
    return flops, ops, fp


def _linear_fwd(d_in: int = D, d_out: int = D) -> int:
    return 2 * T * d_in * d_out


def test_identical_blocks_get_identical_flops():
    torch.manual_seed(0)
    flops, _, fp = _step(_Net())
    by = flops.by_module
    assert by["blocks.0"] == by["blocks.1"] == by["blocks.2"] > 0
    for i in range(L):
        # siblings that read one input each get their own forward and both backward GEMMs
        for name in ("q", "k", "v", "proj"):
            assert by[f"blocks.{i}.attn.{name}"] == 3 * _linear_fwd(), name
            assert fp.forward_by_module[f"blocks.{i}.attn.{name}"] == _linear_fwd()
    # the container is its blocks' sum; the root the whole step (the loss has no counted FLOPs)
    assert by["blocks"] == 3 * by["blocks.0"]
    assert by[""] == flops.per_step and flops.module_frac() == 1.0


def test_dropout_after_linear_gets_no_flops_and_the_linear_its_own_backward():
    flops, _, fp = _step(_Net())
    for i in range(L):
        # forward 2*T*D*D; backward dX = dY W and dW = dY^T X, each 2*T*D*D
        assert flops.by_module[f"blocks.{i}.fc"] == 3 * _linear_fwd()
        assert flops.by_module.get(f"blocks.{i}.drop", 0) == 0
        assert flops.by_module.get(f"blocks.{i}.attn.drop", 0) == 0
        assert fp.bytes_by_module[f"blocks.{i}.drop"] > 0          # it ran: its mask and scale are its own
    # the head's input needs a gradient too: three GEMMs of [T, D] x [D, V]
    assert flops.by_module["head"] == 3 * _linear_fwd(D, V)


def test_work_outside_every_module_is_unattributed():
    flops, ops, _ = _step(_Net(), regularize=True)
    reg = 3 * 2 * V * D * V                 # w @ w.T forward, and its two gradient GEMMs
    assert flops.module_flops() == flops.per_step - reg
    assert flops.module_frac() == pytest.approx(1 - reg / flops.per_step)
    # the rows agree: the calls no module owns are the regularizer's
    owned = sum(o.flops * sum(o.modules.values()) / o.count for o in ops)
    assert owned == pytest.approx(flops.module_flops())


def test_recomputed_forward_belongs_to_the_checkpointed_block():
    plain, _, _ = _step(_Net())
    flops, _, _ = _step(_Net(ckpt=True))
    by = flops.by_module
    assert flops.recompute > 0 and by["blocks.0"] == by["blocks.1"] == by["blocks.2"]
    # each block runs its forward twice: its FLOPs grow by exactly that forward
    fwd_block = plain.by_module["blocks.0"] // 3
    assert by["blocks.0"] == plain.by_module["blocks.0"] + fwd_block
    assert flops.module_frac() == 1.0


def _own_flops(modules: list[ModuleStat]) -> dict[str, int]:
    """Each module's FLOPs less its direct children's: what it owns itself."""
    own = {m.name: m.flops for m in modules}
    for m in modules:
        if m.name:
            parent = m.name.rsplit(".", 1)[0] if "." in m.name else ""
            if parent in own:
                own[parent] -= m.flops
    return own


@pytest.mark.parametrize("build", [gpt_plain, cnn_plain, llama_plain], ids=["gpt", "cnn", "llama"])
def test_module_flops_and_the_unattributed_rest_sum_to_the_step(build):
    p: Profile = build()
    own = _own_flops(p.model.modules)
    assert min(own.values()) >= 0                      # no module holds less than its children
    unattributed = p.flops.per_step - p.flops.module_flops()
    assert sum(own.values()) + unattributed == pytest.approx(p.flops.per_step, rel=0.01)
    assert p.flops.module_frac() >= 0.99               # these models compute their FLOPs in modules
    owned_rows = sum(o.flops * sum(o.modules.values()) / o.count for o in p.ops)
    assert owned_rows == pytest.approx(p.flops.module_flops(), rel=0.01)
    assert all(m.op_bytes > 0 for m in p.model.modules if m.flops > 0)


def test_llama_siblings_and_layers_match():
    by = {m.name: m for m in llama_plain().model.modules}
    for proj in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"):
        a, b = by[f"model.layers.0.{proj}"], by[f"model.layers.1.{proj}"]
        assert a.flops == b.flops == 3 * a.forward_flops > 0, proj
    assert by["model.layers.0.self_attn.q_proj"].flops == by["model.layers.0.self_attn.v_proj"].flops
    assert by["model.layers.0.mlp.gate_proj"].flops == by["model.layers.0.mlp.up_proj"].flops
    assert by["model.layers.0"].flops == by["model.layers.1"].flops


def test_old_profiles_have_no_module_frac_without_flops():
    assert Flops().module_frac() is None
    assert Flops(per_step=100, by_module={"": 60, "a": 60}).module_frac() == 0.6
    # several roots: each outermost name counts once
    assert Flops(per_step=100, by_module={"s": 30, "s.x": 30, "t": 50}).module_flops() == 80


def test_a_pass_started_inside_the_roots_forward_books_its_work_to_the_root():
    # a script without torch.optim (pytorch/examples regression/main.py): the harness sees the step
    # begin at the next forward, so the pass starts inside the root's forward, after its pre-hook
    fc = nn.Linear(4, 1)
    fp = FlopPass({"": fc})
    handle = fc.register_forward_pre_hook(lambda mod, args: fp.start())
    try:
        x = torch.randn(32, 4)
        fc(x).sum().backward()
    finally:
        handle.remove()
    flops, ops = fp.stop()
    # forward [32, 4] x [4, 1]; backward only dW (x needs no gradient): 2 x 32 x 4 each
    assert flops.per_step == 2 * (2 * 32 * 4)
    assert flops.by_module == {"": flops.per_step} and flops.module_frac() == 1.0
    assert all(sum(o.modules.values()) == o.count for o in ops if o.flops)
