"""What PyTorch's CUDA caching allocator would reserve for a step's allocations.

``torch.cuda.max_memory_reserved`` (what ``nvidia-smi`` and most training logs report, torchtitan's
"memory" included) is more than the tensors' peak: the allocator rounds every request, carves
requests out of segments it obtains from ``cudaMalloc`` and keeps them, and a freed block can only
serve a request that fits in it. This module replays the ledger's allocations and frees, in order,
through the allocator's documented rules (``c10/cuda/CUDACachingAllocator.cpp``, PyTorch 2.x,
default settings; the PyTorch docs' "CUDA semantics: memory management" describe the same):

- a request is rounded up to a multiple of 512 bytes (``kMinBlockSize``);
- requests up to 1 MiB (``kSmallSize``) come from the small pool, in 2 MiB segments
  (``kSmallBuffer``); larger ones from the large pool, in 20 MiB segments (``kLargeBuffer``) below
  10 MiB (``kMinLargeAlloc``), else a segment of the request rounded up to 2 MiB (``kRoundLarge``);
- a request takes the smallest free block of its pool that holds it (then the lowest address);
  the block is split when the rest is at least 512 bytes (small pool) or more than 1 MiB (large);
- a freed block merges with free neighbours of its segment; segments are never given back (no
  ``empty_cache``, no out-of-memory retry);
- every segment belongs to the stream whose request opened it, and a free block serves only a
  request on that stream (the allocator's pools are keyed by stream: ``BlockComparator`` orders by
  stream first). FSDP2 allocates its all-gather outputs on its all-gather stream and its
  reduce-scatter inputs on its reduce-scatter stream, so their blocks are never reused by the
  default stream's activations, and the reverse. Events carry the stream (``stream_key``, 0 the
  default); a dry run's ledger reads it from ``torch.cuda.stream(...)`` blocks
  (``ccprof.profiler.dryrun_cuda.current_stream_key``).

Assumed (stated): a block freed after ``record_stream`` on another stream is reusable at its free
event, as if that stream's work were done by then (the allocator waits for it with an event; the
replay has no clock). The CUDA context and NCCL's own buffers are not the allocator's (they are in
the fit: ``ccprof.hardware.projection.memory_fit``).

The run's allocator settings (``AllocatorSettings``, read by :func:`settings_in_force`) change these
rules as ``c10/cuda/CUDACachingAllocator.cpp`` at pytorch/pytorch@001074d25084 does (the same code in
the later versions checked, through the device-generic allocator of PyTorch 2.9+):

- ``expandable_segments:True`` (``try_allocate_expandable_block``, ``find_expandable_block``,
  ``map_block``, ``ExpandableSegment::map``): each (stream, pool) has ONE segment, a reserved
  address range whose pages are mapped on demand, 2 MiB pages (``kSmallBuffer``) for the small pool
  and 20 MiB pages (``kLargeBuffer``) for the large one. A request no free block holds takes the free
  block at the end of the mapped range (if any) plus as many new pages as the rest needs; reserved
  (``reserved_bytes``) grows by the pages mapped. Every block is split when 512 bytes or more are left
  (``should_split``: ``remaining >= kMinBlockSize`` for both pools), and freed blocks merge with free
  neighbours; freed pages stay mapped (only ``empty_cache`` or an out-of-memory retry unmaps them,
  ``release_blocks``/``unmap_block``: neither is replayed). Best fit (``get_free_block``) judges the
  free block at the end of the mapped range by the size it could grow to, so a request takes the next
  larger free block in size order when there is one.
- ``max_split_size_mb`` (``get_free_block``, ``should_split``): a request below it is not served from
  a free block at or above it, a request at or above it only from a free block less than
  ``max_non_split_rounding_mb`` (20 MiB by default) larger, and a block is split only for a request
  below it. Segments are not released to make room (no out-of-memory retry).
- ``roundup_power2_divisions`` (``round_size``, ``roundup_power2_next_division``): a request above
  ``512 x divisions`` is rounded up to the next of ``divisions`` equal steps between the powers of two
  around it, the divisions looked up per power-of-two interval from 1 MiB
  (``AcceleratorAllocatorConfig::roundup_power2_divisions``).
- Not replayed, recorded (``AllocatorSettings.not_replayed``): ``garbage_collection_threshold`` (it
  acts only under ``set_per_process_memory_fraction`` and frees cached segments when close to it),
  the pinned host-memory options, ``backend`` and any key torch does not know.

Example: ``reserved_peak([("alloc", 1, 3 << 20), ("free", 1, 0), ("alloc", 2, 1 << 20)])`` ->
``(20 << 20) + (2 << 20)``: the 3 MiB request gets a 20 MiB segment, the 1 MiB one a small 2 MiB one;
``reserved_peak([("alloc", 1, 3 << 20, 0), ("free", 1, 0), ("alloc", 2, 3 << 20, 7)])`` -> ``40 << 20``:
the freed 20 MiB segment is the default stream's, so stream 7's request opens one of its own.
"""
from __future__ import annotations

import bisect
import os
import re
from collections.abc import Iterable, Mapping

import torch

from ccprof.artefacts.profile import AllocatorSettings

__all__ = ["CachingAllocator", "reserved_peak", "round_size", "segment_size", "parse_alloc_conf",
           "settings_in_force", "ALLOC_CONF_VARS"]

K_MIN_BLOCK = 512
K_SMALL_SIZE = 1 << 20
K_SMALL_BUFFER = 2 << 20
K_LARGE_BUFFER = 20 << 20
K_MIN_LARGE_ALLOC = 10 << 20
K_ROUND_LARGE = 2 << 20


K_ROUNDUP_INTERVALS = 16           # power-of-two intervals of roundup_power2_divisions, from 1 MiB (2**20)


def round_size(nbytes: int, divisions: list[int] | tuple[int, ...] = ()) -> int:
    """A request's size as the allocator serves it: a multiple of 512 bytes, at least 512; with
    ``roundup_power2_divisions`` (``divisions``: one entry per interval, module docstring) a request
    above 512 x its interval's divisions is rounded up to the next division of its power of two.

    Example: ``round_size(1200 << 20, [4] * 16)`` -> ``1280 << 20`` (1024, 1280, 1536, 1792 MiB)."""
    if nbytes < K_MIN_BLOCK:
        return K_MIN_BLOCK
    div = divisions[min(max(nbytes.bit_length() - 1 - 20, 0), K_ROUNDUP_INTERVALS - 1)] if divisions else 0
    if div > 1 and nbytes > K_MIN_BLOCK * div:
        if nbytes & (nbytes - 1) == 0:
            return nbytes
        floor = 1 << (nbytes.bit_length() - 1)
        step = floor >> (div.bit_length() - 1)
        if step == 0:
            return floor << 1
        return -(-nbytes // step) * step
    return -(-nbytes // K_MIN_BLOCK) * K_MIN_BLOCK


def segment_size(rounded: int) -> int:
    """The cudaMalloc segment a request of ``rounded`` bytes opens when no free block holds it."""
    if rounded <= K_SMALL_SIZE:
        return K_SMALL_BUFFER
    if rounded < K_MIN_LARGE_ALLOC:
        return K_LARGE_BUFFER
    return -(-rounded // K_ROUND_LARGE) * K_ROUND_LARGE


class CachingAllocator:
    """The allocator's bookkeeping for one device: ``alloc(key, n, stream)``, ``free(key)``;
    ``reserved`` / ``peak_reserved`` are the segments' bytes, ``allocated`` / ``peak_allocated``
    the blocks handed out (rounded, whole blocks where not split). Free blocks are pooled by
    (stream, small pool?): a block serves only requests on the stream that opened its segment."""

    def __init__(self, settings: AllocatorSettings | None = None) -> None:
        settings = settings or AllocatorSettings()
        self._expandable = settings.expandable_segments
        self._max_split = settings.max_split_size_bytes                  # None: unlimited
        self._non_split_rounding = settings.max_non_split_rounding_bytes or K_LARGE_BUFFER
        self._divisions = list(settings.roundup_power2_divisions)
        self._es_seg: dict[tuple[int, bool], int] = {}      # expandable: (stream, small?) -> its one segment
        self._mapped: dict[tuple[int, bool], int] = {}      # expandable: bytes mapped in that segment
        self.reserved = self.peak_reserved = 0
        self.allocated = self.peak_allocated = 0
        # (stream, small?) -> sorted free blocks (size, seg, start)
        self._free: dict[tuple[int, bool], list[tuple[int, int, int]]] = {}
        self._blocks: dict[int, tuple[tuple[int, bool], int, int, int]] = {}    # key -> (pool, seg, start, size)
        self._starts: list[dict[int, tuple[int, bool]]] = []      # per segment: start -> (size, free)
        self._ends: list[dict[int, int]] = []                      # per segment: end -> start

    def alloc(self, key: int, nbytes: int, stream: int = 0) -> None:
        if key in self._blocks:
            self.free(key)
        size = round_size(nbytes, self._divisions)
        small = size <= K_SMALL_SIZE
        pool_key = (stream, small)
        pool = self._free.setdefault(pool_key, [])
        found = self._free_block(pool_key, pool, size)
        if found is not None:
            block_size, seg, start = found
            del self._starts[seg][start]
            self._ends[seg].pop(start + block_size, None)
        elif self._expandable:
            seg, start, block_size = self._grow(pool_key, pool, size)
        else:
            seg, start, block_size = len(self._starts), 0, segment_size(size)
            self._starts.append({})
            self._ends.append({})
            self._reserve(block_size)
        rest = block_size - size
        if small or self._expandable:
            split = rest >= K_MIN_BLOCK
        else:
            split = (self._max_split is None or size < self._max_split) and rest > K_SMALL_SIZE
        if not split:
            size, rest = block_size, 0
        self._place(seg, start, size, False)
        if rest:
            self._place(seg, start + size, rest, True)
            bisect.insort(pool, (rest, seg, start + size))
        self._blocks[key] = (pool_key, seg, start, size)
        self.allocated += size
        self.peak_allocated = max(self.peak_allocated, self.allocated)

    def _reserve(self, nbytes: int) -> None:
        self.reserved += nbytes
        self.peak_reserved = max(self.peak_reserved, self.reserved)

    def _free_block(self, pool_key: tuple[int, bool], pool: list[tuple[int, int, int]],
                    size: int) -> tuple[int, int, int] | None:
        """The free block ``get_free_block`` hands a request of ``size`` (taken out of ``pool``), or None."""
        i = bisect.bisect_left(pool, (size, -1, -1))
        if i == len(pool):
            return None
        if self._expandable and i + 1 < len(pool) and self._at_end(pool_key, pool[i]):
            i += 1          # the block at the mapped end counts as the size it can grow to
        block_size = pool[i][0]
        if self._max_split is not None:
            if size < self._max_split and block_size >= self._max_split:
                return None
            if size >= self._max_split and block_size >= size + self._non_split_rounding:
                return None
        return pool.pop(i)

    def _at_end(self, pool_key: tuple[int, bool], block: tuple[int, int, int]) -> bool:
        size, seg, start = block
        return seg == self._es_seg.get(pool_key) and start + size == self._mapped[pool_key]

    def _grow(self, pool_key: tuple[int, bool], pool: list[tuple[int, int, int]],
              size: int) -> tuple[int, int, int]:
        """Expandable segments: the pool's segment maps pages at its end for ``size`` bytes, joined
        to the free block already there; returns that free block (segment, start, bytes)."""
        seg = self._es_seg.get(pool_key)
        if seg is None:
            seg = self._es_seg[pool_key] = len(self._starts)
            self._starts.append({})
            self._ends.append({})
            self._mapped[pool_key] = 0
        mapped = self._mapped[pool_key]
        start = self._ends[seg].get(mapped)
        if start is not None and self._starts[seg][start][1]:
            pool.remove((mapped - start, seg, start))
            del self._starts[seg][start]
            del self._ends[seg][mapped]
        else:
            start = mapped
        page = K_SMALL_BUFFER if pool_key[1] else K_LARGE_BUFFER
        grow = -(-(size - (mapped - start)) // page) * page
        self._mapped[pool_key] = mapped + grow
        self._reserve(grow)
        return seg, start, mapped + grow - start

    def free(self, key: int) -> None:
        got = self._blocks.pop(key, None)
        if got is None:
            return
        pool_key, seg, start, size = got
        self.allocated -= size
        pool, starts, ends = self._free[pool_key], self._starts[seg], self._ends[seg]
        del starts[start]
        ends.pop(start + size, None)
        nxt = starts.get(start + size)
        if nxt is not None and nxt[1]:
            pool.remove((nxt[0], seg, start + size))
            del starts[start + size]
            ends.pop(start + size + nxt[0], None)
            size += nxt[0]
        prev = ends.get(start)
        if prev is not None and starts[prev][1]:
            prev_size = starts[prev][0]
            pool.remove((prev_size, seg, prev))
            del starts[prev]
            del ends[start]
            start, size = prev, prev_size + size
        self._place(seg, start, size, True)
        bisect.insort(pool, (size, seg, start))

    def _place(self, seg: int, start: int, size: int, free: bool) -> None:
        self._starts[seg][start] = (size, free)
        self._ends[seg][start + size] = start


def reserved_peak(events: Iterable[tuple], settings: AllocatorSettings | None = None) -> tuple[int, int]:
    """(peak reserved, peak allocated) bytes for ``events``: ``("alloc", key, nbytes[, stream])`` and
    ``("free", key, 0[, stream])`` in the order they happened (stream 0, the default, where absent;
    a free goes back to the pool of the stream its block was allocated on), under the allocator
    ``settings`` (None: the defaults).

    Example: ``reserved_peak([("alloc", 1, 3 << 20)], parse_alloc_conf("expandable_segments:True"))``
    -> ``(20 << 20, 3 << 20)``: one 20 MiB page mapped, the request split off its start."""
    a = CachingAllocator(settings)
    for what, key, nbytes, *stream in events:
        if what == "alloc":
            a.alloc(key, nbytes, stream[0] if stream else 0)
        else:
            a.free(key)
    return a.peak_reserved, a.peak_allocated


# -- the run's settings ---------------------------------------------------------------------------
# PyTorch 2.9+ reads PYTORCH_ALLOC_CONF first and PYTORCH_CUDA_ALLOC_CONF (deprecated) only where it is
# unset (c10/core/AllocatorConfig.cpp, AcceleratorAllocatorConfig::instance); earlier versions read
# only PYTORCH_CUDA_ALLOC_CONF (c10/cuda/CUDAAllocatorConfig.cpp). torch._C._accelerator_setAllocatorSettings
# came with the device-generic config, so its presence says which rule the installed torch follows.
ALLOC_CONF_VARS = ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF")
SET_SETTINGS_CALL = "torch.cuda.memory._set_allocator_settings"
_MIB = 1 << 20
# keys torch parses but whose effect the replay leaves out (module docstring)
_NOT_REPLAYED_KEYS = ("garbage_collection_threshold", "pinned_use_cuda_host_register", "pinned_num_register_threads",
                      "pinned_use_background_threads", "pinned_reserve_segment_size_mb", "release_lock_on_cudamalloc",
                      "backend", "per_process_memory_fraction", "graph_capture_record_stream_reuse")


def _entries(text: str) -> list[tuple[str, str]]:
    """``"a:1,b:[1:2,>:4]"`` -> ``[("a", "1"), ("b", "[1:2,>:4]")]``: commas inside brackets stay."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth <= 0:
            parts.append(cur)
            cur, depth = "", 0
        else:
            cur += ch
    parts.append(cur)          # an unclosed bracket runs to the end: its entry reports it
    return [(k.strip(), v.strip()) for k, _, v in (p.partition(":") for p in parts if p.strip())]


def _mib_at_least_20(key: str, value: str) -> int:
    if not re.fullmatch(r"\d+", value) or int(value) < K_LARGE_BUFFER // _MIB:
        raise ValueError(f"{key}:{value} (torch wants a whole number of MiB, at least 20)")
    return int(value) * _MIB


def _divisions(value: str) -> list[int]:
    """``roundup_power2_divisions``' value as 16 per-interval divisions (``parseRoundUpPower2Divisions``)."""
    def pow2_or_0(v: str) -> int:
        if not re.fullmatch(r"\d+", v) or (int(v) & (int(v) - 1)):
            raise ValueError(f"roundup_power2_divisions:{value} (each division a power of 2)")
        return int(v)
    if not value.startswith("["):
        n = pow2_or_0(value)
        if n == 0:
            raise ValueError(f"roundup_power2_divisions:{value} (a power of 2)")
        return [n] * K_ROUNDUP_INTERVALS
    if not value.endswith("]"):
        raise ValueError(f"roundup_power2_divisions:{value} (no closing bracket)")
    out, first, last = [0] * K_ROUNDUP_INTERVALS, True, 0
    for boundary, _, v in (e.partition(":") for e in value[1:-1].split(",") if e.strip()):
        boundary, n = boundary.strip(), pow2_or_0(v.strip())
        if boundary == ">":
            out[last + 1:] = [n] * (K_ROUNDUP_INTERVALS - last - 1)
            continue
        if not re.fullmatch(r"\d+", boundary) or int(boundary) & (int(boundary) - 1) or int(boundary) == 0:
            raise ValueError(f"roundup_power2_divisions:{value} (each interval a power of 2 MiB)")
        index = min(int(boundary).bit_length() - 1, K_ROUNDUP_INTERVALS - 1)
        if first:
            out[:index] = [n] * index
            first = False
        out[index] = n
        last = index
    return out


def parse_alloc_conf(text: str, source: str = "", base: AllocatorSettings | None = None) -> AllocatorSettings:
    """The settings after torch parses ``text`` (``key:value,key:value``) on top of ``base`` (None: the
    defaults): as ``AcceleratorAllocatorConfig::parseArgs``, ``max_split_size_mb``,
    ``roundup_power2_divisions`` and ``garbage_collection_threshold`` go back to their defaults unless
    ``text`` sets them, the others keep ``base``'s values. A value torch would refuse is recorded in
    ``errors`` and leaves the default; an unknown key is recorded in ``not_replayed``. Never raises.

    Example: ``parse_alloc_conf("expandable_segments:True,max_split_size_mb:512").rule()`` ->
    ``"expandable segments, max_split_size_mb 512"``."""
    base = base or AllocatorSettings()
    fields: dict = {"text": text, "source": source, "expandable_segments": base.expandable_segments,
                    "max_split_size_bytes": None, "max_non_split_rounding_bytes": base.max_non_split_rounding_bytes,
                    "roundup_power2_divisions": [], "garbage_collection_threshold": None}
    not_replayed = [k for k in base.not_replayed if not k.startswith("garbage_collection_threshold")]
    errors = list(base.errors)
    for key, value in _entries(text):
        try:
            if key == "expandable_segments":
                if value.lower() not in ("true", "false"):
                    raise ValueError(f"{key}:{value} (torch wants True or False)")
                fields["expandable_segments"] = value.lower() == "true"
            elif key == "max_split_size_mb":
                fields["max_split_size_bytes"] = _mib_at_least_20(key, value)
            elif key == "max_non_split_rounding_mb":
                fields["max_non_split_rounding_bytes"] = _mib_at_least_20(key, value)
            elif key == "roundup_power2_divisions":
                fields["roundup_power2_divisions"] = _divisions(value)
            else:
                if key == "garbage_collection_threshold":
                    fields["garbage_collection_threshold"] = float(value)
                entry = f"{key}:{value}" if key in _NOT_REPLAYED_KEYS else f"{key}:{value} (a key the replay does not know)"
                not_replayed = [k for k in not_replayed if k.partition(":")[0] != key] + [entry]
        except ValueError as exc:
            errors.append(str(exc) if str(exc).startswith(key) else f"{key}:{value} ({exc})")
    return AllocatorSettings(**fields, not_replayed=not_replayed, errors=errors)


def settings_in_force(environ: Mapping[str, str] | None = None,
                      calls: Iterable[tuple[str, str]] = ()) -> AllocatorSettings | None:
    """The allocator settings the script's process has at the measured step: the environment's
    (``environ``, default ``os.environ`` as the process has it then; ``PYTORCH_ALLOC_CONF`` before
    ``PYTORCH_CUDA_ALLOC_CONF`` where the installed torch reads it), then each
    ``_set_allocator_settings(text)`` call made before the step, in order (``calls``: (text, where)).
    Stated rule: what holds when the step starts holds for the whole step (torch applies a setting from
    the next allocation on; a change in the middle of the step is not modelled). None: no settings.

    Example: ``settings_in_force({"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}).source`` ->
    ``"PYTORCH_CUDA_ALLOC_CONF"``."""
    environ = os.environ if environ is None else environ
    names = ALLOC_CONF_VARS if hasattr(torch._C, "_accelerator_setAllocatorSettings") else ALLOC_CONF_VARS[1:]
    settings = next((parse_alloc_conf(environ[n], n) for n in names if n in environ), None)
    for text, where in calls:
        settings = parse_alloc_conf(str(text), f"{SET_SETTINGS_CALL} at {where}" if where else SET_SETTINGS_CALL,
                                    base=settings)
    return settings
