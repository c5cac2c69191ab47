"""A profile's op rows and modules as pandas DataFrames, with their projected seconds.

    from ccprof.artefacts.profile import Profile
    p = Profile.from_json("ccprof-report/profile.json")
    ops = p.ops_frame()                      # one row per Profile.ops row, projected_s on the target GPU
    ops.groupby("module").projected_s.sum().nlargest(5)
    p.modules_frame().sort_values("module_s")

The seconds are the hardware stage's, stored in the profile for the target GPU
(``GpuProjection.op_s`` and ``module_s``, filled by ``ccprof.hardware.attach``): this module
reads them and computes nothing. pandas is imported when a frame is built, not when the
artefacts load. Lists and mappings (shapes, the owning modules) are JSON text, so a frame written
to CSV reads back equal.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ccprof.artefacts.profile import GpuProjection, Profile

__all__ = ["OPS_COLUMNS", "MODULES_COLUMNS", "projection_for", "ops_rows", "modules_rows", "ops_frame",
           "modules_frame"]

# one row per Profile.ops row (an aten op grouped by dtype, phase, shapes and scope)
OPS_COLUMNS = ("op", "dtype", "phase", "calls", "shapes", "out_shapes", "flops", "bytes_read", "bytes_written",
               "scope", "module", "modules", "recompute", "projected_s")
# one row per module of the model's tree (ModelInfo.modules); figures include the descendants'
MODULES_COLUMNS = ("name", "class", "depth", "params", "trainable_params", "flops", "forward_flops",
                   "activation_bytes", "op_bytes", "module_s")


def projection_for(profile: Profile, gpu: str | None = None, *, per_op: bool = True) -> tuple[str, GpuProjection]:
    """``(gpu_id, projection)`` holding the per-op seconds (``per_op``; else the per-module ones)
    for ``gpu`` (a catalog id; default the target GPU, ``profile.cost.gpu``). ValueError saying how
    to cost them when the profile does not hold them (not attached, another GPU, an older profile).

    Example: ``projection_for(p)[1].op_s[0]`` -> seconds of ``p.ops[0]`` on the target GPU.
    """
    gid = gpu or (profile.cost.gpu if profile.cost is not None else None)
    if not gid:
        raise ValueError("the profile is not costed on a GPU: ccprof.hardware.attach(profile, gpu=ID) "
                         "projects it (or `ccprof export PROFILE --gpu ID`)")
    proj = (profile.projection or {}).get(gid)
    held = proj is not None and (len(proj.op_s) == len(profile.ops) if per_op else bool(proj.module_s or proj.op_s))
    if proj is None or not held:
        raise ValueError(f"the profile holds no per-{'op' if per_op else 'module'} seconds for {gid!r} (they are "
                         "kept for the target GPU only): ccprof.hardware.attach(profile, gpu="
                         f"{gid!r}) costs them (or `ccprof export PROFILE --gpu {gid}`)")
    return gid, proj


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _owner(modules: dict[str, int]) -> str:
    """The module owning most of a row's calls ("" when none does: the loss, the optimizer)."""
    return max(modules.items(), key=lambda kv: kv[1])[0] if modules else ""


def ops_rows(profile: Profile, gpu: str | None = None) -> list[dict[str, Any]]:
    """The rows of :func:`ops_frame` as plain dicts (OPS_COLUMNS), in ``profile.ops`` order."""
    _, proj = projection_for(profile, gpu)
    return [{"op": o.op, "dtype": o.dtype, "phase": o.phase, "calls": o.count, "shapes": _json(o.shapes),
             "out_shapes": _json(o.out_shapes), "flops": o.flops, "bytes_read": o.bytes_read,
             "bytes_written": o.bytes_written, "scope": o.scope, "module": _owner(o.modules),
             "modules": _json(o.modules), "recompute": o.recompute, "projected_s": float(s)}
            for o, s in zip(profile.ops, proj.op_s)]


def modules_rows(profile: Profile, gpu: str | None = None) -> list[dict[str, Any]]:
    """The rows of :func:`modules_frame` as plain dicts (MODULES_COLUMNS), in the model's order."""
    _, proj = projection_for(profile, gpu, per_op=False)
    owned = bool(proj.module_s)         # False: the op rows name no owners (older profiles): unknown, not 0
    return [{"name": m.name, "class": m.class_, "depth": m.depth, "params": m.params,
             "trainable_params": m.trainable_params, "flops": m.flops, "forward_flops": m.forward_flops,
             "activation_bytes": m.activation_bytes, "op_bytes": m.op_bytes,
             "module_s": float(proj.module_s.get(m.name, 0.0)) if owned else float("nan")}
            for m in profile.model.modules]


def ops_frame(profile: Profile, gpu: str | None = None):
    """One row per op row of the step (``profile.ops``, same order): op, dtype, phase, calls,
    shapes and out_shapes of one call (JSON), FLOPs and bytes read/written over all calls, scope,
    module (the owner of most calls, ``""`` for none), modules (every owner and its calls, JSON),
    recompute, and ``projected_s``: the row's kernels' device seconds on the GPU
    (``GpuProjection.op_s``). ``projected_s`` sums to the step's modelled device time,
    ``sum(projection.detail["device_s"].values())``: host dispatch and the data wait are in no
    row. ``frame.attrs["gpu"]`` names the GPU. ValueError when the seconds are not in the profile
    (:func:`projection_for`).
    """
    import pandas as pd  # here: the artefacts load without pandas

    gid, _ = projection_for(profile, gpu)
    frame = pd.DataFrame(ops_rows(profile, gid), columns=list(OPS_COLUMNS))
    frame.attrs["gpu"] = gid
    return frame


def modules_frame(profile: Profile, gpu: str | None = None):
    """One row per module (``profile.model.modules``, "" is the root): name, class, depth, params,
    trainable params, FLOPs and forward FLOPs of one step, activation bytes saved for backward,
    op bytes, and ``module_s``: the device seconds on the GPU of the kernels the module and its
    descendants own (``GpuProjection.module_s``; 0 for a module that owns none, NaN throughout when
    the op rows name no owners, as in profiles older than ``OpCost.modules``). ``frame.attrs["gpu"]``
    names the GPU. ValueError when the seconds are not in the profile (:func:`projection_for`).
    """
    import pandas as pd  # here: the artefacts load without pandas

    gid, _ = projection_for(profile, gpu, per_op=False)
    frame = pd.DataFrame(modules_rows(profile, gid), columns=list(MODULES_COLUMNS))
    frame.attrs["gpu"] = gid
    return frame
