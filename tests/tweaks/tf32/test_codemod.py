"""The tf32 codemod, before -> after: both TF32 flags set once, after the imports."""
from __future__ import annotations

from tests.helpers.codemod import PLAIN, check


def test_tf32_sets_the_matmul_and_cudnn_flags_after_the_imports():
    check(PLAIN, PLAIN.replace("import torch.nn as nn\n", "import torch.nn as nn\n\n"
                               "torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls on Ampere+ GPUs\n"
                               "torch.backends.cudnn.allow_tf32 = True\n"), "tf32")
