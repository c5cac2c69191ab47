"""The accelerator catalog: dense peak FLOP/s per dtype, memory, bandwidth, interconnect, $/h.

The built-in entries live in ``catalog.toml`` next to this file, each with its datasheet
and a dated price source. Users override prices or add hardware with their own TOML in
the same shape; files are merged in this order, later wins field by field:

1. the built-in ``catalog.toml``;
2. ``$CCPROF_CATALOG`` if set, else ``$XDG_CONFIG_HOME/ccprof/catalog.toml``
   (``~/.config/ccprof/catalog.toml``) if it exists;
3. the ``path`` given to :func:`load_catalog` (``--catalog FILE``).

A user file that only changes a price::

    [gpu.h100-sxm]
    usd_per_hour = 2.49
    price_source = "our reserved contract"
    price_date = "2026-12-01"

A new GPU needs at least ``name``, ``memory_gb``, ``bandwidth_gb_s`` and ``tflops.fp32``;
``sm_count``, ``tdp_w`` and ``process_nm`` make its projected kernel times sharper (wave quantization and the
power cap of ``ccprof.hardware.kernels``). ``gpus_per_node`` and ``network_gbit_s_per_gpu`` (the node's
inter-node bandwidth per GPU, one direction, Gbit/s) let the plan and the collectives span several nodes
(``ccprof.hardware.comm``); a GPU without them is planned on one node only::

    [gpu.h100-sxm]
    gpus_per_node = 8
    network_gbit_s_per_gpu = 400     # 8 x 400 Gb/s InfiniBand NDR
    network = "our cluster: 8 x 400 Gb/s NDR per node"
    network_source = "our cluster's spec sheet"
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pyproject pins tomli for 3.10
    import tomli as tomllib

__all__ = [
    "GpuSpec", "DTYPE_KEYS", "BUILTIN_CATALOG_PATH", "DEFAULT_GPU", "load_catalog",
    "user_catalog_path", "parse_catalog", "resolve_gpu", "match_device", "catalog_rows",
    "CatalogError",
]

BUILTIN_CATALOG_PATH = Path(__file__).with_name("catalog.toml")

# Peak keys a catalog entry may carry, in TFLOP/s in the TOML and FLOP/s in GpuSpec.
DTYPE_KEYS = ("fp32", "tf32", "bf16", "fp16", "fp8")

# Target GPU when the profile ran without one and the user names none: the A100 80GB is
# the training GPU rented on demand at every provider the catalog's prices cite (AWS p4de, Azure
# NC A100 v4, Lambda).
DEFAULT_GPU = "a100-80gb"

_REQUIRED_NEW = ("name", "memory_gb", "bandwidth_gb_s")
_KNOWN_KEYS = {
    "name", "vendor", "arch", "memory_gb", "bandwidth_gb_s", "tflops", "interconnect",
    "interconnect_gb_s", "spec_source", "match", "usd_per_hour", "price_source",
    "price_date", "unverified", "notes", "sm_count", "tdp_w", "process_nm",
    "gpus_per_node", "network_gbit_s_per_gpu", "network", "network_source",
}


class CatalogError(ValueError):
    """A catalog file the user wrote cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class GpuSpec:
    """One accelerator. FLOP/s and bytes in SI units; ``peak_flops`` holds dense peaks.

    ``peak_flops`` maps a key of :data:`DTYPE_KEYS` to FLOP/s; a missing key means the GPU
    has no units for that dtype (the T4 has no bf16). ``usd_per_hour`` is ``None`` for a
    user entry without a price.
    """
    id: str
    name: str
    memory_bytes: int
    bandwidth_bytes_per_s: float
    peak_flops: dict[str, float] = field(default_factory=dict)
    vendor: str = ""
    arch: str = ""
    interconnect: str = ""
    interconnect_bytes_per_s: float | None = None
    usd_per_hour: float | None = None
    price_source: str = ""
    price_date: str = ""
    spec_source: str = ""
    match: tuple[str, ...] = ()
    unverified: tuple[str, ...] = ()
    notes: str = ""
    origin: str = "built-in"                # "built-in" or the user file that defined/changed it
    # What the cost model's wave quantization and power cap need (ccprof.hardware.kernels):
    # streaming multiprocessors (AMD: compute units) and the board power limit. Without them
    # waves are continuous and fp32 is not power-capped.
    sm_count: int | None = None
    tdp_w: float | None = None
    process_nm: float | None = None         # the die's process node, for the fp32 power cap
    # The cloud node the price comes from, for plans across nodes (ccprof.hardware.comm): its GPUs and
    # its inter-node network per GPU, one direction (bytes/s; Gbit/s in the TOML). Without a network
    # figure the GPU is planned on one node only.
    gpus_per_node: int | None = None
    network_bytes_per_s_per_gpu: float | None = None
    network: str = ""                       # what the node's network is ("p5.48xlarge: 3,200 Gbps EFA")
    network_source: str = ""

    @property
    def memory_gb(self) -> float:
        return self.memory_bytes / 1e9

    @property
    def bandwidth_gb_s(self) -> float:
        return self.bandwidth_bytes_per_s / 1e9


def user_catalog_path() -> Path | None:
    """The per-user catalog: ``$CCPROF_CATALOG``, else ``~/.config/ccprof/catalog.toml``.

    Returns the path when the variable is set (even if the file is missing, so the error
    names it) or when the default file exists; else ``None``.
    """
    env = os.environ.get("CCPROF_CATALOG")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    path = base / "ccprof" / "catalog.toml"
    return path if path.is_file() else None


def load_catalog(path: str | Path | None = None, *, user: bool = True) -> dict[str, GpuSpec]:
    """Built-in catalog, then the per-user file, then ``path``; later files win per field.

    Inputs: ``path`` (``--catalog FILE``) or ``None``; ``user=False`` skips the per-user file
    (tests). Output: ``{gpu_id: GpuSpec}`` in catalog order. Raises :class:`CatalogError`
    with the file and field at fault.

    >>> cat = load_catalog(user=False)
    >>> cat["a100-80gb"].peak_flops["bf16"]
    312000000000000.0
    """
    raw = _read_toml(BUILTIN_CATALOG_PATH)
    catalog = parse_catalog(raw, origin="built-in")
    extra: list[Path] = []
    if user:
        up = user_catalog_path()
        if up is not None:
            extra.append(up)
    if path is not None:
        extra.append(Path(path).expanduser())
    for p in extra:
        catalog = parse_catalog(_read_toml(p), base=catalog, origin=str(p))
    return catalog


def _read_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file, naming it in the error."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise CatalogError(f"catalog file {path} does not exist; check --catalog or $CCPROF_CATALOG") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"catalog file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise CatalogError(f"catalog file {path} is not a UTF-8 TOML file (it looks binary)") from None
    except IsADirectoryError:
        raise CatalogError(f"catalog file {path} is a folder; give a .toml file") from None
    except OSError as exc:
        raise CatalogError(f"catalog file {path}: cannot read it ({exc.strerror})") from None
    except RecursionError:
        raise CatalogError(f"catalog file {path} is nested too deeply to be a catalog") from None


def _file_date(origin: str) -> str:
    """Modification date of a user file, as the price date of prices it sets without one."""
    try:
        return _dt.date.fromtimestamp(Path(origin).stat().st_mtime).isoformat()
    except OSError:
        return _dt.date.today().isoformat()


def parse_catalog(raw: dict[str, Any], *, base: dict[str, GpuSpec] | None = None,
                  origin: str = "built-in") -> dict[str, GpuSpec]:
    """Merge the ``[gpu.<id>]`` tables of one parsed TOML document over ``base``.

    Inputs: ``raw`` as from ``tomllib.load``; ``base`` the catalog so far; ``origin`` the
    file name for messages and for ``GpuSpec.origin``. Output: a new dict.
    """
    out = dict(base or {})
    gpus = raw.get("gpu", {})
    if not isinstance(gpus, dict):
        raise CatalogError(f"{origin}: expected [gpu.<id>] tables, got {type(gpus).__name__}")
    for gpu_id, entry in gpus.items():
        where = f"{origin}: [gpu.{gpu_id}]"
        if not isinstance(entry, dict):
            raise CatalogError(f"{where} must be a table")
        unknown = set(entry) - _KNOWN_KEYS
        if unknown:
            raise CatalogError(f"{where} has unknown keys {sorted(unknown)}; known keys: {sorted(_KNOWN_KEYS)}")
        gid = gpu_id.strip().lower()
        old = out.get(gid)
        if old is None:
            missing = [k for k in _REQUIRED_NEW if k not in entry]
            if "fp32" not in (entry.get("tflops") or {}):
                missing.append("tflops.fp32")
            if missing:
                raise CatalogError(
                    f"{where} is a new GPU and lacks {', '.join(missing)}; a new GPU needs name, "
                    "memory_gb, bandwidth_gb_s and tflops (fp32, and bf16/fp16 if it has tensor "
                    "cores). `ccprof gpus --json` shows the built-in entries as examples.")
            old = GpuSpec(id=gid, name="", memory_bytes=0, bandwidth_bytes_per_s=0.0)
        out[gid] = _merge(old, entry, where=where, origin=origin, is_new=gid not in (base or {}))
    return out


def _positive(value: Any, where: str, key: str) -> float:
    """A positive number from the TOML, or a CatalogError naming the key."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise CatalogError(f"{where}: {key} must be a positive number, got {value!r}")
    return float(value)


def _merge(old: GpuSpec, entry: dict[str, Any], *, where: str, origin: str, is_new: bool) -> GpuSpec:
    """Apply one TOML table over an existing (or blank) GpuSpec."""
    changes: dict[str, Any] = {}
    for key in ("name", "vendor", "arch", "interconnect", "spec_source", "notes",
                "price_source", "price_date", "network", "network_source"):
        if key in entry:
            changes[key] = str(entry[key])
    if "memory_gb" in entry:
        changes["memory_bytes"] = int(_positive(entry["memory_gb"], where, "memory_gb") * 1e9)
    if "bandwidth_gb_s" in entry:
        changes["bandwidth_bytes_per_s"] = _positive(entry["bandwidth_gb_s"], where, "bandwidth_gb_s") * 1e9
    if "sm_count" in entry:
        changes["sm_count"] = int(_positive(entry["sm_count"], where, "sm_count"))
    if "tdp_w" in entry:
        changes["tdp_w"] = _positive(entry["tdp_w"], where, "tdp_w")
    if "process_nm" in entry:
        changes["process_nm"] = _positive(entry["process_nm"], where, "process_nm")
    if "gpus_per_node" in entry:
        per_node = _positive(entry["gpus_per_node"], where, "gpus_per_node")
        if per_node != int(per_node):
            raise CatalogError(f"{where}: gpus_per_node must be a whole number, got {entry['gpus_per_node']!r}")
        changes["gpus_per_node"] = int(per_node)
    if "network_gbit_s_per_gpu" in entry:
        changes["network_bytes_per_s_per_gpu"] = (
            _positive(entry["network_gbit_s_per_gpu"], where, "network_gbit_s_per_gpu") * 1e9 / 8)
    if "interconnect_gb_s" in entry:
        changes["interconnect_bytes_per_s"] = _positive(entry["interconnect_gb_s"], where, "interconnect_gb_s") * 1e9
    if "tflops" in entry:
        tf = entry["tflops"]
        if not isinstance(tf, dict):
            raise CatalogError(f"{where}: tflops must be a table like {{ fp32 = 19.5, bf16 = 312 }}")
        bad = set(tf) - set(DTYPE_KEYS)
        if bad:
            raise CatalogError(f"{where}: tflops has unknown dtypes {sorted(bad)}; use {list(DTYPE_KEYS)} (dense figures)")
        peaks = dict(old.peak_flops)
        for k, v in tf.items():
            peaks[k] = _positive(v, where, f"tflops.{k}") * 1e12
        changes["peak_flops"] = {k: peaks[k] for k in DTYPE_KEYS if k in peaks}
    if "match" in entry:
        pats = entry["match"]
        pats = [pats] if isinstance(pats, str) else list(pats)
        for p in pats:
            try:
                re.compile(p)
            except re.error as exc:
                raise CatalogError(f"{where}: match pattern {p!r} is not a valid regular expression ({exc})") from None
        changes["match"] = tuple(pats)
    if "unverified" in entry:
        changes["unverified"] = tuple(entry["unverified"])
    if "usd_per_hour" in entry:
        changes["usd_per_hour"] = _positive(entry["usd_per_hour"], where, "usd_per_hour")
        if origin != "built-in":
            changes.setdefault("price_source", f"user catalog {origin}")
            changes.setdefault("price_date", _file_date(origin))
            # a user's own price is theirs to vouch for
            changes["unverified"] = tuple(u for u in changes.get("unverified", old.unverified)
                                          if u != "usd_per_hour")
    if changes:
        changes["origin"] = origin if (is_new or origin == "built-in") else f"{old.origin} + {origin}"
    spec = replace(old, **changes)
    if not spec.name:
        spec = replace(spec, name=spec.id)
    return spec


def _norm(text: str) -> str:
    return re.sub(r"[\s_]+", "-", text.strip().lower())


def resolve_gpu(gpu: str, catalog: dict[str, GpuSpec]) -> str:
    """The catalog id the user meant by ``gpu`` (``--gpu``): an id, or a unique prefix or name.

    ``"H100_SXM"`` -> ``"h100-sxm"``; ``"H200"`` -> ``"h200"``; ``"NVIDIA L4"`` -> ``"l4"``.
    Raises ValueError listing the known ids when there is no single match.
    """
    key = _norm(gpu)
    if key in catalog:
        return key
    prefixed = [g for g in catalog if g.startswith(key)]
    if len(prefixed) == 1:
        return prefixed[0]
    by_name = match_device(gpu, catalog)
    if by_name is not None:
        return by_name
    hint = f" (matches {', '.join(prefixed)}; be more specific)" if prefixed else ""
    raise ValueError(f"unknown GPU {gpu!r}{hint}. Known ids: {', '.join(catalog)}. "
                     "Add your own with a TOML file (--catalog FILE); `ccprof gpus` lists them.")


def match_device(device_name: str, catalog: dict[str, GpuSpec]) -> str | None:
    """Catalog id for a device name as the driver reports it (``"NVIDIA A100-SXM4-80GB"``).

    Tries each entry's ``match`` regular expressions (case-insensitive); returns the id
    when exactly one entry matches, else ``None``.
    """
    if not device_name:
        return None
    hits = [gid for gid, spec in catalog.items()
            if any(re.search(p, device_name, flags=re.IGNORECASE) for p in spec.match)]
    return hits[0] if len(hits) == 1 else None


def catalog_rows(catalog: dict[str, GpuSpec]) -> list[dict[str, Any]]:
    """The catalog as JSON-able rows in the TOML's human units (GB, GB/s, TFLOP/s, USD/h)."""
    rows = []
    for gid, s in catalog.items():
        rows.append({
            "id": gid,
            "name": s.name,
            "vendor": s.vendor,
            "arch": s.arch,
            "memory_gb": round(s.memory_bytes / 1e9, 3),
            "bandwidth_gb_s": round(s.bandwidth_bytes_per_s / 1e9, 3),
            "tflops": {k: round(v / 1e12, 3) for k, v in s.peak_flops.items()},
            "interconnect": s.interconnect,
            "interconnect_gb_s": (round(s.interconnect_bytes_per_s / 1e9, 3)
                                  if s.interconnect_bytes_per_s else None),
            "sm_count": s.sm_count,
            "tdp_w": s.tdp_w,
            "process_nm": s.process_nm,
            "gpus_per_node": s.gpus_per_node,
            "network_gbit_s_per_gpu": (round(s.network_bytes_per_s_per_gpu * 8 / 1e9, 3)
                                       if s.network_bytes_per_s_per_gpu else None),
            "network": s.network,
            "network_source": s.network_source,
            "usd_per_hour": s.usd_per_hour,
            "price_source": s.price_source,
            "price_date": s.price_date,
            "spec_source": s.spec_source,
            "unverified": list(s.unverified),
            "notes": s.notes,
            "origin": s.origin,
        })
    return rows
