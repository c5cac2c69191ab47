"""The compile codemod, before -> after: the model compiled where it is built; the Trainer keyword."""
from __future__ import annotations

from tests.helpers.codemod import HF, PLAIN, check


def test_compile_wraps_the_model_where_it_is_built_and_sets_the_trainer_keyword():
    check(PLAIN, PLAIN.replace("nn.Linear(8, 2))\n", "nn.Linear(8, 2))\nmodel = torch.compile(model)\n"), "compile")
    check(HF, HF.replace("    per_device_train_batch_size=8,\n",
                         "    per_device_train_batch_size=8,\n    torch_compile=True,\n"), "compile")
