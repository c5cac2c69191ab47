"""ccprof.hardware: the GPU catalog, step-time projection and the cost model.

    from ccprof.hardware import load_catalog, attach, project, cost_for, right_size
    cat = load_catalog()                       # built-in + user TOML files
    profile = attach(profile, gpu="l4", total_steps=20_000)
    profile.projection["h100-sxm"].step_s, profile.cost.usd_run
"""
from ccprof.hardware.catalog import (DEFAULT_GPU, CatalogError, GpuSpec, catalog_rows,
                                     load_catalog, match_device, resolve_gpu, user_catalog_path)
from ccprof.hardware.cost import (DEFAULT_RUN_STEPS, attach, cost_for, right_size, run_steps,
                                  steps_per_epoch, target_gpu)
from ccprof.hardware.roofline import (LAUNCH_S_PER_KERNEL, MEMORY_HEADROOM_FRAC, project,
                                      roofline_step_s, source_gpu)

__all__ = [
    "GpuSpec", "CatalogError", "DEFAULT_GPU", "DEFAULT_RUN_STEPS", "LAUNCH_S_PER_KERNEL",
    "MEMORY_HEADROOM_FRAC", "load_catalog", "user_catalog_path", "catalog_rows", "resolve_gpu",
    "match_device", "project", "roofline_step_s", "source_gpu", "cost_for", "right_size",
    "run_steps", "steps_per_epoch", "target_gpu", "attach",
]
