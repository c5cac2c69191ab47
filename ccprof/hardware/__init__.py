"""ccprof.hardware: the GPU catalog and the one cost model (seconds, then dollars).

    from ccprof.hardware import load_catalog, attach, project, cost_step, predict_op_s
    cat = load_catalog()                       # built-in + user TOML files
    profile = attach(profile, gpu="l4", total_steps=20_000)
    profile.projection["h100-sxm"].phase_s, profile.cost.usd_run
    predict_op_s("aten.mm", [(4096, 4096), (4096, 4096)], "bfloat16", "h100-sxm")

The cost model reads a profile once, as ``StepInputs`` (``inputs``: the ops, measured times,
host counts, data timing, model and policy facts); every seconds function takes a Profile or
its StepInputs. Layers, each looking only down: ``kernels`` (achieved seconds of one kernel,
fitted on measured kernels: ``kernel_params.json``), ``translate`` (what the GPU would run for
the profiled ops), ``step`` (device and host time by phase, the data wait), ``projection``
(every catalog GPU), ``cost`` (dollars for the planned run), ``comm`` (collectives of
data-parallel training).
"""
from ccprof.hardware.catalog import (
                                     DEFAULT_GPU,
                                     CatalogError,
                                     GpuSpec,
                                     catalog_rows,
                                     load_catalog,
                                     match_device,
                                     resolve_gpu,
                                     user_catalog_path,
)
from ccprof.hardware.cost import DEFAULT_RUN_STEPS, attach, cost_for, right_size, run_steps, steps_per_epoch, target_gpu
from ccprof.hardware.inputs import StepInputs, step_inputs
from ccprof.hardware.kernels import load_params, op_class, predict_op_s
from ccprof.hardware.projection import (
                                     MEMORY_HEADROOM_FRAC,
                                     fits_memory,
                                     half_dtype,
                                     project,
                                     source_gpu,
                                     usable_memory_bytes,
)
from ccprof.hardware.step import StepCost, cost_step
from ccprof.hardware.translate import Kernel, Policy, policy_for, translate

__all__ = [
    "GpuSpec", "CatalogError", "DEFAULT_GPU", "DEFAULT_RUN_STEPS", "MEMORY_HEADROOM_FRAC",
    "load_catalog", "user_catalog_path", "catalog_rows", "resolve_gpu", "match_device", "project",
    "source_gpu", "half_dtype", "usable_memory_bytes", "fits_memory", "cost_for", "right_size",
    "run_steps", "steps_per_epoch", "target_gpu", "attach", "predict_op_s", "op_class", "load_params",
    "StepCost", "cost_step", "Kernel", "Policy", "policy_for", "translate", "StepInputs", "step_inputs",
]
