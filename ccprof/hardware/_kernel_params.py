"""The kernel model's fitted and stated constants, and their loading from ``kernel_params.json``.

``bench/fit_cost_model.py`` refits the file; what each constant was fitted on is written next
to it there. ``load_params()`` reads the shipped file once (cached).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

PARAMS_PATH = Path(__file__).with_name("kernel_params.json")


@dataclass(frozen=True)
class GemmParams:
    """Fitted tile model of one math unit. ``tiles`` are (tm, tn, CTAs resident per SM) with
    ``tile_eff`` the share of an SM's peak one wave of that tile reaches; ``k_overhead`` is the
    fixed per-tile work (prologue, epilogue) in units of K; ``splitk_s`` the cost of a split-K
    reduction launch; ``operand_bw_eff`` the bandwidth share when the operands bound it;
    ``occupancy_gamma`` how much of an SM's rate a thinly occupied SM gives its tiles (0: a lone
    tile runs at 1/c of it, 1: at all of it); ``splitk_min_k`` the shortest K slice split-K makes."""
    tiles: tuple[tuple[int, int, int], ...]
    tile_eff: tuple[float, ...]
    k_overhead: float
    splitk_s: float
    operand_bw_eff: float
    occupancy_gamma: float = 0.0
    splitk_min_k: float = 128.0
    splits: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    fitted_on: str = ""


@dataclass(frozen=True)
class KernelParams:
    """All fitted and stated constants of the kernel model (``kernel_params.json``)."""
    gemm: dict[str, GemmParams]
    stream_eff: dict[str, float]            # share of bandwidth by STREAM_CLASSES
    gemm_floor_s: float                     # device floor of a GEMM kernel
    stream_floor_s: float                   # device floor of a memory-bound kernel
    conv_eff: float                         # implicit-GEMM convolution vs a plain GEMM
    winograd_speedup: float                 # fp32 3x3 stride-1 convolutions (cuDNN's Winograd)
    attention_eff: float                    # fused attention vs its matmuls as plain GEMMs
    simt_pj_per_flop_12nm: float            # energy of one fp32 FLOP at 12 nm (power cap)
    sources: dict[str, str] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)   # provenance and held-out errors
    harness: dict[str, Any] = field(default_factory=dict)  # the calibration harness's host terms


def _gemm_params(d: dict[str, Any]) -> GemmParams:
    return GemmParams(tiles=tuple(tuple(int(x) for x in t) for t in d["tiles"]),
                      tile_eff=tuple(float(x) for x in d["tile_eff"]), k_overhead=float(d["k_overhead"]),
                      splitk_s=float(d["splitk_s"]), operand_bw_eff=float(d["operand_bw_eff"]),
                      occupancy_gamma=float(d.get("occupancy_gamma", 0.0)),
                      splitk_min_k=float(d.get("splitk_min_k", 128.0)),
                      splits=tuple(int(x) for x in d.get("splits", (1, 2, 4, 8, 16, 32, 64, 128, 256))),
                      fitted_on=str(d.get("fitted_on", "")))


def params_from_dict(d: dict[str, Any]) -> KernelParams:
    """A KernelParams from the JSON layout of ``kernel_params.json``."""
    return KernelParams(
        gemm={k: _gemm_params(v) for k, v in d["gemm"].items()},
        stream_eff={k: float(v) for k, v in d["stream_eff"].items()},
        gemm_floor_s=float(d["gemm_floor_s"]), stream_floor_s=float(d["stream_floor_s"]),
        conv_eff=float(d["conv_eff"]), winograd_speedup=float(d["winograd_speedup"]),
        attention_eff=float(d["attention_eff"]), simt_pj_per_flop_12nm=float(d["simt_pj_per_flop_12nm"]),
        sources=dict(d.get("sources", {})), fit=dict(d.get("fit", {})), harness=dict(d.get("harness", {})))


@lru_cache(maxsize=4)
def load_params(path: str | None = None) -> KernelParams:
    """The shipped fitted parameters (or those at ``path``)."""
    with open(path or PARAMS_PATH) as fh:
        return params_from_dict(json.load(fh))
