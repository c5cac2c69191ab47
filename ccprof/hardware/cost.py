"""Unit economics of a training run on a catalog GPU: $/step, $/1k samples, $/1M tokens, $/run.

All dollar figures come from one projected (or measured) step time and one hourly price,
and each ``Cost`` names the GPU, the price, its source and date, and where the planned
run size came from (``run_steps_source``)::

    usd_per_step = usd_per_hour * num_gpus * step_s / 3600
    usd_run      = usd_per_step * run_steps + usd_eval_run

``usd_eval_run`` prices the evaluation the script runs between steps (``profile.eval``: one
episode's projected seconds x run_steps / its interval), apart from the training step.

The planned run size is, in order: ``--total-steps``; ``--epochs`` x steps per epoch; the
limits the script itself set, read from the live run (``profile.run_limits``: a framework
trainer's own count, then the loop around the optimizer step, then limit-named settings; an
epoch limit counts only with a finite loader); the Trainer's ``max_steps`` /
``num_train_epochs`` as the source reads them (3 epochs when a Trainer is used and the script
does not set it: the ``TrainingArguments`` default). Otherwise the run size is unknown:
``run_steps`` is 0, the dollars of the run are not computed, and advice ranks by the share of
the step it saves.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
from typing import Any

from ccprof.artefacts.profile import Cost, GpuProjection, HostInfo, Profile
from ccprof.hardware.catalog import DEFAULT_GPU, GpuSpec, load_catalog, resolve_gpu
from ccprof.hardware.inputs import step_inputs
from ccprof.hardware.projection import project, source_gpu, spanned_nodes
from ccprof.hardware.step import module_s, op_s

__all__ = ["DEFAULT_RUN_STEPS", "HF_DEFAULT_EPOCHS", "NoStepTimeError", "steps_per_epoch", "run_steps",
           "target_gpu", "cost_for", "right_size", "attach"]

# Kept for callers that name it: an unknown run size is 0 steps (no invented run).
DEFAULT_RUN_STEPS = 0

# transformers.TrainingArguments(num_train_epochs=3.0) is the library default.
HF_DEFAULT_EPOCHS = 3.0


class NoStepTimeError(ValueError):
    """The profile has nothing to cost: no measured GPU steps, op records or FLOPs."""


def steps_per_epoch(profile: Profile) -> int | None:
    """Optimizer steps per epoch, from the DataLoader or Trainer the profiler saw.

    ``data.steps_per_epoch`` is taken as optimizer steps, unless it equals the number of
    batches in the dataset while several micro-batches make one step (gradient
    accumulation): then it counted batches, and is divided by the micro-batch count. A loader
    whose sampler never ends (``data.finite`` False) has no epoch: None.
    """
    spe = profile.data.steps_per_epoch
    if not spe or spe <= 0 or profile.data.finite is False:
        return None
    mb = max(profile.steps.micro_batches or 1, 1)
    d = profile.data
    if mb > 1 and d.dataset_len and d.batch_size:
        batches = math.ceil(d.dataset_len / d.batch_size)
        if spe == batches:
            return max(math.ceil(spe / mb), 1)
    return int(spe)


def _from_limits(profile: Profile, spe: int | None) -> tuple[int, str] | None:
    """The run size from the script's own limits: the most direct tier wins; within it the
    first limit the loop reaches (steps, or epochs x steps per epoch)."""
    lims = sorted(profile.run_limits or [], key=lambda x: x.priority)
    notes = []
    for tier in sorted({int(x.priority) for x in lims}):
        found: list[tuple[int, str]] = []
        for lim in (x for x in lims if int(x.priority) == tier):
            if lim.kind == "steps" and lim.value >= 1:
                found.append((int(lim.value), lim.source))
            elif lim.kind == "epochs" and lim.value > 0:
                if spe:
                    found.append((max(round(lim.value * spe), 1), f"{lim.source} x {spe} steps/epoch"))
                else:
                    notes.append(f"{lim.source} (no finite epoch to multiply)")
        if found:
            return min(found)
    return None


def run_steps(profile: Profile, total_steps: int | None = None,
              epochs: float | None = None) -> tuple[int, str]:
    """Planned optimizer steps of the run and a sentence saying where the number came from.

    Returns ``(0, why)`` when nothing says how long the run is.

    >>> from ccprof.artefacts.profile import Profile
    >>> run_steps(Profile(), total_steps=5000)
    (5000, '--total-steps 5000')
    """
    spe = steps_per_epoch(profile)
    notes = []
    if total_steps is not None:
        if total_steps <= 0:
            raise ValueError(f"--total-steps must be a positive number of optimizer steps, got {total_steps}")
        return int(total_steps), f"--total-steps {total_steps}"
    if epochs is not None:
        if epochs <= 0:
            raise ValueError(f"--epochs must be positive, got {epochs}")
        if spe:
            return max(round(epochs * spe), 1), f"--epochs {epochs:g} x {spe} steps/epoch"
        notes.append(f"--epochs {epochs:g} given but steps per epoch are unknown "
                     "(no finite DataLoader seen); pass --total-steps")
    got = _from_limits(profile, spe)
    if got is not None:
        return got
    args = profile.static.training_args or {}
    max_steps = args.get("max_steps")
    if isinstance(max_steps, (int, float)) and not isinstance(max_steps, bool) and max_steps > 0:
        return int(max_steps), f"TrainingArguments(max_steps={int(max_steps)})"
    n_epochs = args.get("num_train_epochs")
    if profile.static.hf_trainer and spe:
        if isinstance(n_epochs, (int, float)) and not isinstance(n_epochs, bool) and n_epochs > 0:
            return max(round(n_epochs * spe), 1), f"TrainingArguments(num_train_epochs={n_epochs:g}) x {spe} steps/epoch"
        if n_epochs is None:
            return (max(round(HF_DEFAULT_EPOCHS * spe), 1),
                    f"TrainingArguments default num_train_epochs={HF_DEFAULT_EPOCHS:g} x {spe} steps/epoch")
    prefix = "; ".join(notes) + "; " if notes else ""
    epoch = f" (one epoch would be {spe:,} steps)" if spe else ""
    return 0, (prefix + "unknown: the script sets no run length ccprof could read" + epoch
               + "; pass --total-steps or --epochs")


def target_gpu(profile: Profile, catalog: dict[str, GpuSpec], gpu: str | None = None) -> tuple[str, str]:
    """The one answer to "which GPU are the projections and dollars for?", and why.

    Precedence, first that applies:

    1. ``gpu``: what the user named (``--gpu`` on analyze or advise, ``AdviceContext.gpu``),
       an id, unique prefix or name (``resolve_gpu``); an unknown one raises ValueError;
    2. the GPU the profile was already costed on (``profile.cost.gpu``, kept in profile.json
       by an earlier ``attach``), when the catalog still has it;
    3. the GPU the profile ran on, when the catalog has it (``source_gpu``: its catalog id, or
       its driver name matched);
    4. :data:`DEFAULT_GPU` (the catalog's first entry when a catalog lacks it).

    There is no environment variable or config key for the target GPU (``$CCPROF_CATALOG``
    only adds GPUs and prices). Returns ``(gpu_id, choice)`` where choice is ``"--gpu"``,
    the earlier cost's own choice (else ``"as costed before"``), ``"device in use"`` or a sentence naming the default.

    Example: ``target_gpu(profile, load_catalog(), "H100")`` -> ``("h100-sxm", "--gpu")``.
    """
    if gpu:
        return resolve_gpu(gpu, catalog), "--gpu"
    if profile.cost is not None and profile.cost.gpu in catalog:
        return profile.cost.gpu, str((profile.cost.detail or {}).get("gpu_choice") or "as costed before")
    src = source_gpu(profile, catalog)
    if src is not None:
        return src, "device in use"
    default = DEFAULT_GPU if DEFAULT_GPU in catalog else next(iter(catalog))
    if profile.device.type == "cuda":
        why = (f"default {default}: the GPU in use ({profile.device.name or 'unnamed'}) is not in the "
               "catalog; add it with --catalog FILE or pick one with --gpu")
    else:
        why = f"default {default}: profiled without a GPU; pick one with --gpu"
    return default, why


def cost_for(profile: Profile, gpu_id: str, catalog: dict[str, GpuSpec], price_usd: float | None = None,
             total_steps: int | None = None, epochs: float | None = None, *,
             projection: dict[str, GpuProjection] | None = None, num_gpus: int = 1,
             bf16: bool = False, gpu_choice: str = "") -> Cost:
    """Unit economics of the profiled step on ``gpu_id``.

    Inputs: the profile; a catalog id; ``price_usd`` overrides the catalog's $/h
    (``--price``); ``total_steps``/``epochs`` size the planned run; ``projection`` reuses
    :func:`project` output; ``num_gpus`` bills that many GPUs per step; ``bf16`` costs the
    bf16-autocast projection instead of the step as measured. Output: a ``Cost``;
    ``usd_per_1m_tokens`` is None unless the inputs are token ids.

    Example: ``cost_for(profile, "h100-sxm", load_catalog(), total_steps=10_000).usd_run``.
    """
    gid = resolve_gpu(gpu_id, catalog)
    spec = catalog[gid]
    before = profile.cost
    if price_usd is not None:
        if price_usd <= 0:
            raise ValueError(f"--price must be a positive USD per GPU-hour, got {price_usd}")
        usd_h, p_source, p_date = float(price_usd), "--price", _today()
    elif before is not None and before.gpu == gid and before.usd_per_hour > 0:
        # costed before on this GPU: its price stays (a --price given then, or the catalog's price of
        # that day), so advising a saved profile again changes only what the user names now
        usd_h, p_source, p_date = before.usd_per_hour, before.price_source, before.price_date
    elif spec.usd_per_hour is not None:
        usd_h, p_source, p_date = spec.usd_per_hour, spec.price_source, spec.price_date
    else:
        raise ValueError(f"GPU {gid!r} has no price in the catalog; pass --price USD or add "
                         f"usd_per_hour to [gpu.{gid}] in your catalog file")
    proj = (projection or project(profile, {gid: spec} if source_gpu(profile, catalog) is None else catalog))[gid]
    step_s = proj.step_s_bf16 if bf16 else proj.step_s
    if step_s is None or step_s <= 0:
        raise NoStepTimeError(f"no step time to cost on {gid}: the profile has no GPU-measured steps, "
                              "per-op records or FLOP count (see the profile's findings)")
    n = max(int(num_gpus), 1)
    usd_per_step = usd_h * n * step_s / 3600.0
    samples = profile.steps.samples_per_step
    tokens = profile.steps.tokens_per_step if profile.data.token_inputs else None
    spe = steps_per_epoch(profile)
    if (total_steps is None and epochs is None and before is not None and before.run_steps > 0
            and before.run_steps_source.startswith("--")):
        n_steps, n_source = before.run_steps, before.run_steps_source      # a run size the user gave then
    else:
        n_steps, n_source = run_steps(profile, total_steps, epochs)
    run_hours = n_steps * step_s / 3600.0
    ev, eval_s, evals = profile.eval, proj.eval_s, 0.0
    if ev is not None and eval_s and n_steps and ev.every_steps:
        # validation / generate() between steps: its own seconds, as often as the script runs it
        evals = n_steps / ev.every_steps + ev.extra_episodes
    usd_eval = usd_h * max(int(num_gpus), 1) * (eval_s or 0.0) * evals / 3600.0
    run_hours += (eval_s or 0.0) * evals / 3600.0
    on_source = proj.method == "measured"
    energy = profile.gpu.energy_j_per_step if (on_source and not bf16 and profile.gpu is not None) else None
    detail: dict[str, Any] = {
        "gpu_name": spec.name,
        "gpu_choice": gpu_choice,
        "step_s_method": proj.method,
        "num_gpus": n,
        "precision": "bf16 autocast (projected)" if bf16 else "as profiled",
        "label": (f"{spec.name} at ${usd_h:.2f}/GPU-hour"
                  + (" (--price)" if p_source == "--price" else f", priced {p_date}")),
    }
    if "usd_per_hour" in spec.unverified and p_source != "--price":
        detail["price_unverified"] = True
    if energy is not None:
        detail["energy_kwh_run"] = energy * n_steps / 3.6e6
    return Cost(
        gpu=gid,
        usd_per_hour=usd_h,
        price_date=p_date,
        price_source=p_source,
        step_s=step_s,
        usd_per_step=usd_per_step,
        usd_per_1k_steps=usd_per_step * 1000,
        usd_per_1k_samples=usd_per_step / samples * 1000 if samples else None,
        usd_per_1m_tokens=usd_per_step / tokens * 1e6 if tokens else None,
        samples_per_s=samples / step_s if samples else None,
        tokens_per_s=tokens / step_s if tokens else None,
        steps_per_epoch=spe,
        usd_per_epoch=usd_per_step * spe if spe else None,
        run_steps=n_steps,
        run_steps_source=n_source,
        usd_run=usd_per_step * n_steps + usd_eval,
        run_hours=run_hours,
        energy_j_per_step=energy,
        detail=detail,
        eval_s=eval_s,
        evals_in_run=evals,
        usd_eval_run=usd_eval,
    )


def _today() -> str:
    return dt.date.today().isoformat()


def right_size(profile: Profile, catalog: dict[str, GpuSpec], total_steps: int | None = None,
               epochs: float | None = None, *, projection: dict[str, GpuProjection] | None = None,
               bf16: bool = False, prices: dict[str, float] | None = None,
               num_gpus: int = 1) -> list[dict[str, Any]]:
    """Every catalog GPU the job fits on, ranked by the planned run's cost (then by hours);
    with the run size unknown, by the cost of a step (the same order).

    Inputs: the profile and catalog; the run size as for :func:`cost_for` (when neither is
    given and the profile already carries a ``cost``, its ``run_steps`` are reused); ``prices``
    overrides $/h per GPU id (a ``--price`` already in ``profile.cost`` applies to its GPU);
    ``bf16`` ranks the bf16-autocast projection. GPUs without a price are skipped. Output:
    dicts with ``gpu``, ``name``, ``step_s``, ``usd_per_hour``, ``price_date``,
    ``usd_per_step``, ``usd_run``, ``hours``, ``method``, ``mfu``, ``rank_usd``,
    ``rank_time`` (1 = fastest) and ``run_steps``/``run_steps_source``.
    """
    proj = projection or profile.projection or project(profile, catalog)
    prices = dict(prices or {})
    run_source = None
    if profile.cost is not None:
        if profile.cost.price_source == "--price":
            prices.setdefault(profile.cost.gpu, profile.cost.usd_per_hour)
        if total_steps is None and epochs is None and profile.cost.run_steps > 0:
            total_steps, run_source = profile.cost.run_steps, profile.cost.run_steps_source
    rows: list[dict[str, Any]] = []
    for gid, spec in catalog.items():
        p = proj.get(gid)
        if p is None or not p.fits:
            continue
        price = prices.get(gid)
        if price is None and spec.usd_per_hour is None:
            continue
        step = p.step_s_bf16 if bf16 else p.step_s
        if step is None or step <= 0:
            continue
        c = cost_for(profile, gid, catalog, price, total_steps, epochs, projection=proj, bf16=bf16,
                     num_gpus=num_gpus)
        rows.append({
            "gpu": gid, "name": spec.name, "step_s": c.step_s, "usd_per_hour": c.usd_per_hour,
            "price_date": c.price_date, "price_source": c.price_source,
            "usd_per_step": c.usd_per_step, "usd_run": c.usd_run, "hours": c.run_hours,
            "usd_per_1k_samples": c.usd_per_1k_samples, "method": p.method, "mfu": p.mfu,
            "run_steps": c.run_steps, "run_steps_source": run_source or c.run_steps_source,
            # the step's band from what was measured (a batch's making), relative
            "band_frac": (max(p.step_s_hi - p.step_s, p.step_s - p.step_s_lo, 0.0) / p.step_s
                          if not bf16 and p.step_s and p.step_s_lo is not None and p.step_s_hi is not None else 0.0),
        })
    # $/step orders the GPUs as $/run does (one run size for all), and still does when the run
    # size is unknown (usd_run 0 everywhere); costs closer than either GPU's band are a tie,
    # broken by the shorter step, then the id (a measured batch time must not flip the cheapest)
    rows.sort(key=functools.cmp_to_key(_cheaper))
    for i, r in enumerate(rows, 1):
        r["rank_usd"] = i
    for i, r in enumerate(sorted(rows, key=lambda r: (r["step_s"], r["usd_per_step"])), 1):
        r["rank_time"] = i
    return rows


def _cheaper(a: dict[str, Any], b: dict[str, Any]) -> int:
    tol = max(a.get("band_frac", 0.0), b.get("band_frac", 0.0))
    ua, ub = a["usd_per_step"], b["usd_per_step"]
    if abs(ua - ub) > tol * max(ua, ub) and ua != ub:
        return -1 if ua < ub else 1
    for ka, kb in ((a["step_s"], b["step_s"]), (a["gpu"], b["gpu"])):
        if ka != kb:
            return -1 if ka < kb else 1
    return 0


def attach(profile: Profile, *, gpu: str | None = None, catalog: dict[str, GpuSpec] | None = None,
           price_usd: float | None = None, total_steps: int | None = None,
           epochs: float | None = None, num_gpus: int = 1, host_speed: float | None = None) -> Profile:
    """The profile with ``projection`` (every catalog GPU) and ``cost`` (the target GPU) set;
    the target GPU's projection also holds each op row's and each module's device seconds
    (``op_s``, ``module_s``).

    Inputs: ``gpu`` (``--gpu``; default the GPU in use, else :data:`DEFAULT_GPU`), a catalog
    (default :func:`load_catalog`), ``price_usd`` (``--price``), the planned run size,
    ``num_gpus`` billed per step (data-parallel jobs: the world size), and ``host_speed``
    (``--host-speed``: the GPU machine's host CPU against the reference host,
    ``ccprof.hardware.host``; kept in ``profile.host.target_speed``).
    Output: ``dataclasses.replace(profile, projection=..., cost=...)``; when the profile ran
    on a catalog GPU, ``device.catalog_id`` is filled too. With nothing to cost (no steps,
    ops or FLOPs) ``cost`` is None and ``reasons["cost"]`` says why; a bad ``--gpu`` or
    ``--price`` raises ValueError.

    Example: ``attach(Profile.from_json("profile.json"), gpu="l4", total_steps=20_000)``.
    """
    cat = catalog if catalog is not None else load_catalog()
    if host_speed is not None:
        if not (host_speed > 0 and math.isfinite(host_speed)):
            raise ValueError(f"--host-speed must be a positive number, got {host_speed!r}")
        host = profile.host if profile.host is not None else HostInfo()
        profile = dataclasses.replace(profile, host=dataclasses.replace(host, target_speed=float(host_speed)))
    inputs = step_inputs(profile)          # what the cost model reads, read once
    proj = project(inputs, cat)
    gid, choice = target_gpu(profile, cat, gpu)
    nodes = spanned_nodes(inputs)
    unplanned = [g for g in cat if g not in proj]      # no network figure for collectives across nodes
    if gid in unplanned:
        raise ValueError(f"--gpu {gid}: the script's collectives span {nodes} nodes and the catalog has no network "
                         f"figure for {gid}; add gpus_per_node and network_gbit_s_per_gpu for it with --catalog FILE, "
                         "or pick another --gpu (`ccprof gpus --json` shows each GPU's network)")
    if gid in proj and gid in cat and inputs.ops:
        calib = proj[gid].detail.get("calibration") or {}
        per_op = op_s(inputs, cat[gid], class_factors=calib.get("class_factors"))
        per_module = module_s(inputs, cat[gid], class_factors=calib.get("class_factors"),
                              names=[m.name for m in profile.model.modules], seconds=per_op)
        proj = {**proj, gid: dataclasses.replace(proj[gid], module_s=per_module, op_s=per_op)}
    changes: dict[str, Any] = {"projection": proj}
    if unplanned:
        changes["reasons"] = {**profile.reasons, "network": (
            f"{', '.join(unplanned)} not projected: the script's collectives span {nodes} nodes and the catalog has "
            "no network figure for them (add gpus_per_node and network_gbit_s_per_gpu with --catalog FILE)")}
    try:
        cost = cost_for(profile, gid, cat, price_usd, total_steps, epochs,
                        projection=proj, gpu_choice=choice, num_gpus=num_gpus)
        # the right-size table as priced now, kept in the artefact: a saved profile renders the
        # same report tomorrow, whatever the catalog's prices by then
        table = right_size(dataclasses.replace(profile, cost=cost), cat, projection=proj, num_gpus=num_gpus)
        names = {g: cat[g].name for g in proj if g in cat}
        changes["cost"] = dataclasses.replace(cost, detail={**cost.detail, "right_size": table,
                                                            "gpu_names": names})
    except NoStepTimeError as exc:
        changes["cost"] = None
        changes["reasons"] = {**changes.get("reasons", profile.reasons), "cost": str(exc)}
    src = source_gpu(inputs, cat)
    if src is not None and profile.device.catalog_id != src:
        changes["device"] = dataclasses.replace(profile.device, catalog_id=src)
    return dataclasses.replace(profile, **changes)
