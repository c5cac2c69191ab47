"""The caching allocator's replay (ccprof.profiler.allocator): the rounding, the pools and their
segment sizes, best-fit reuse with splitting, merging of freed neighbours, segments kept."""
from __future__ import annotations

import random

from ccprof.profiler.allocator import CachingAllocator, reserved_peak, round_size, segment_size

MiB = 1 << 20


def test_requests_round_to_512_bytes_and_open_segments_by_pool():
    assert (round_size(1), round_size(512), round_size(513)) == (512, 512, 1024)
    assert segment_size(512) == segment_size(MiB) == 2 * MiB           # small pool
    assert segment_size(MiB + 512) == segment_size(10 * MiB - 512) == 20 * MiB
    assert segment_size(10 * MiB) == 10 * MiB and segment_size(11 * MiB + 1) == 12 * MiB


def test_small_requests_share_a_segment_and_a_freed_block_serves_a_request_that_fits():
    a = CachingAllocator()
    for k in range(4):
        a.alloc(k, 400 * 1024)                  # four 400 KiB tensors fit one 2 MiB segment
    assert a.reserved == 2 * MiB
    a.alloc(9, 700 * 1024)                      # 400 KiB left in the segment: a second one
    assert a.reserved == 4 * MiB
    a.free(0)
    a.free(1)                                   # neighbours merge into 800 KiB
    a.alloc(10, 700 * 1024)
    assert a.reserved == 4 * MiB and a.allocated == 2 * 400 * 1024 + 2 * 700 * 1024


def test_a_large_block_is_split_only_when_more_than_a_mebibyte_is_left():
    a = CachingAllocator()
    a.alloc(1, 3 * MiB)                          # a 20 MiB segment, split: 17 MiB free
    a.free(1)
    a.alloc(2, 19 * MiB + 512)                   # less than 1 MiB would be left: the whole block
    assert a.reserved == 20 * MiB and a.allocated == 20 * MiB


def test_fragmentation_reserves_more_than_the_tensors_peak():
    # a 12 MiB tensor, freed, then two 7 MiB ones: the first fits in the freed 12 MiB segment
    # (5 MiB left, split), the second needs a segment of its own
    peak_reserved, peak_allocated = reserved_peak([("alloc", 1, 12 * MiB), ("free", 1, 0),
                                                   ("alloc", 2, 7 * MiB), ("alloc", 3, 7 * MiB)])
    assert peak_allocated == 14 * MiB
    assert peak_reserved == 12 * MiB + 20 * MiB


def test_a_random_trace_keeps_the_books_and_frees_back_to_whole_segments():
    rng = random.Random(0)
    a = CachingAllocator()
    live = {}
    for step in range(3000):
        if live and rng.random() < 0.45:
            key = rng.choice(list(live))
            a.free(key)
            del live[key]
        else:
            n = rng.choice([rng.randint(1, 4096), rng.randint(1, 2 * MiB), rng.randint(MiB, 40 * MiB)])
            a.alloc(step, n)
            live[step] = n
        assert a.allocated >= sum(round_size(n) for n in live.values())
        assert a.reserved >= a.allocated
    for key in list(live):
        a.free(key)
    assert a.allocated == 0
    # every segment is one free block again
    for seg, starts in enumerate(a._starts):
        assert list(starts) == [0] and starts[0][1]


def test_a_block_freed_on_one_stream_serves_no_other_streams_request():
    # the default stream's freed 20 MiB segment holds a second 3 MiB request on the default stream,
    # not one on stream 7, which opens a segment of its own
    one = reserved_peak([("alloc", 1, 3 * MiB, 0), ("free", 1, 0, 0), ("alloc", 2, 3 * MiB, 0)])
    two = reserved_peak([("alloc", 1, 3 * MiB, 0), ("free", 1, 0, 0), ("alloc", 2, 3 * MiB, 7)])
    assert one[0] == 20 * MiB and two[0] == 40 * MiB
    # events without a stream are the default stream's (older ledgers' three-field events)
    assert reserved_peak([("alloc", 1, 3 * MiB), ("free", 1, 0), ("alloc", 2, 3 * MiB)]) == one


def test_a_block_goes_back_to_the_pool_of_the_stream_it_was_allocated_on():
    # FSDP2's all-gather output: allocated on its stream (7), freed while the default stream runs
    a = CachingAllocator()
    a.alloc(1, 12 * MiB, 7)
    a.free(1)                                   # the free carries no stream: the block knows its own
    a.alloc(2, 12 * MiB, 7)                     # stream 7's next gather reuses the 12 MiB segment
    assert a.reserved == 12 * MiB
    a.free(2)
    a.alloc(3, 12 * MiB, 0)                     # the default stream cannot: a second 12 MiB segment
    assert a.reserved == 24 * MiB and a.allocated == 12 * MiB


def test_small_blocks_are_pooled_by_stream_too():
    a = CachingAllocator()
    a.alloc(1, 400 * 1024, 0)
    a.alloc(2, 400 * 1024, 5)                   # would share the 2 MiB segment on one stream
    assert a.reserved == 4 * MiB
    a.alloc(3, 400 * 1024, 5)                   # fits in stream 5's segment
    assert a.reserved == 4 * MiB
