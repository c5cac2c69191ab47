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
replay has no clock). Not modelled: ``expandable_segments`` and other ``PYTORCH_CUDA_ALLOC_CONF``
settings; the CUDA context and NCCL's own buffers are not the allocator's (they are in the fit:
``ccprof.hardware.projection.memory_fit``).

Example: ``reserved_peak([("alloc", 1, 3 << 20), ("free", 1, 0), ("alloc", 2, 1 << 20)])`` ->
``(20 << 20) + (2 << 20)``: the 3 MiB request gets a 20 MiB segment, the 1 MiB one a small 2 MiB one;
``reserved_peak([("alloc", 1, 3 << 20, 0), ("free", 1, 0), ("alloc", 2, 3 << 20, 7)])`` -> ``40 << 20``:
the freed 20 MiB segment is the default stream's, so stream 7's request opens one of its own.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable

__all__ = ["CachingAllocator", "reserved_peak", "round_size", "segment_size"]

K_MIN_BLOCK = 512
K_SMALL_SIZE = 1 << 20
K_SMALL_BUFFER = 2 << 20
K_LARGE_BUFFER = 20 << 20
K_MIN_LARGE_ALLOC = 10 << 20
K_ROUND_LARGE = 2 << 20


def round_size(nbytes: int) -> int:
    """A request's size as the allocator serves it: a multiple of 512 bytes, at least 512."""
    return max(K_MIN_BLOCK, -(-nbytes // K_MIN_BLOCK) * K_MIN_BLOCK)


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

    def __init__(self) -> None:
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
        size = round_size(nbytes)
        small = size <= K_SMALL_SIZE
        pool_key = (stream, small)
        pool = self._free.setdefault(pool_key, [])
        i = bisect.bisect_left(pool, (size, -1, -1))
        if i < len(pool):
            block_size, seg, start = pool.pop(i)
            del self._starts[seg][start]
            self._ends[seg].pop(start + block_size, None)
        else:
            seg, start, block_size = len(self._starts), 0, segment_size(size)
            self._starts.append({})
            self._ends.append({})
            self.reserved += block_size
            self.peak_reserved = max(self.peak_reserved, self.reserved)
        rest = block_size - size
        if not ((rest >= K_MIN_BLOCK) if small else (rest > K_SMALL_SIZE)):
            size, rest = block_size, 0
        self._place(seg, start, size, False)
        if rest:
            self._place(seg, start + size, rest, True)
            bisect.insort(pool, (rest, seg, start + size))
        self._blocks[key] = (pool_key, seg, start, size)
        self.allocated += size
        self.peak_allocated = max(self.peak_allocated, self.allocated)

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


def reserved_peak(events: Iterable[tuple]) -> tuple[int, int]:
    """(peak reserved, peak allocated) bytes for ``events``: ``("alloc", key, nbytes[, stream])`` and
    ``("free", key, 0[, stream])`` in the order they happened (stream 0, the default, where absent;
    a free goes back to the pool of the stream its block was allocated on)."""
    a = CachingAllocator()
    for what, key, nbytes, *stream in events:
        if what == "alloc":
            a.alloc(key, nbytes, stream[0] if stream else 0)
        else:
            a.free(key)
    return a.peak_reserved, a.peak_allocated
