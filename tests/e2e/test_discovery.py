"""Model discovery that survives real code (issue 20): parameters reached through plain lists
and the optimizers' param_groups, not only through the called model's attributes."""
from __future__ import annotations

from ccprof.hardware import attach
from ccprof.profiler.runner import run_script
from tests.helpers.paths import SCRIPTS


def test_forward_forward_layers_in_a_plain_list_each_with_its_optimizer():
    """Forward-Forward: Net.layers is a plain list, each layer has its Adam and is trained with
    ``self.forward(x)`` (no module hook fires); was "0 parameters", one optimizer."""
    r = run_script(SCRIPTS / "forward_forward.py", [], steps=3, warmup=1, timeout_s=120)
    assert r.exit_code == 0, r.message
    p = attach(r.profile, gpu="a100-80gb")
    # Linear(32, 64): 32 x 64 + 64 = 2,112; Linear(64, 64): 64 x 64 + 64 = 4,160
    assert p.model.params == p.model.trainable_params == 2_112 + 4_160
    assert [m.name for m in p.model.modules if m.depth == 0] == ["layers.0", "layers.1"]
    # both optimizers, the second not stepped yet (layer 0 trains first) and so without state
    opts = p.optimizer.optimizers
    assert [(o.class_, o.param_count) for o in opts] == [("Adam", 2_112), ("Adam", 4_160)]
    assert opts[0].steps > 0 and opts[1].steps == 0 and opts[1].state_bytes == 0
    # Adam: two fp32 moments per parameter and a step counter per tensor (2 x 4 bytes each)
    assert p.optimizer.state_bytes == p.memory.optimizer_state_bytes == 2_112 * 8 + 2 * 4
    assert p.memory.params_bytes == (2_112 + 4_160) * 4
    # the run: 2 layers x range(self.num_epochs) = 50 steps each (self is an nn.Module: callable)
    assert p.cost.run_steps == 100 and "x range(self.num_epochs)" in p.cost.run_steps_source


def test_one_batch_from_a_new_iterator_each_epoch_is_no_loader_epoch():
    """``for epoch in range(12): xb, yb = next(iter(loader))``: 12 steps, and the loader's 16
    batches are no epoch of this run (was: 12 epochs x 16 steps when only ``args.epochs`` was read)."""
    r = run_script(SCRIPTS / "run_sizes.py", ["--style", "peek", "--epochs", "12"], steps=3, warmup=1, timeout_s=120)
    assert r.exit_code == 0, r.message
    p = attach(r.profile, gpu="a100-80gb")
    assert p.cost.run_steps == 12 and p.cost.run_steps_source.startswith("loops: range(args.epochs)")
    assert p.data.steps_per_epoch is None and p.cost.usd_per_epoch is None
    assert "one batch from a new iterator" in p.reasons["steps_per_epoch"]
