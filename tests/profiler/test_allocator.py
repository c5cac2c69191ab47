"""The caching allocator's replay (ccprof.profiler.allocator): the rounding, the pools and their
segment sizes, best-fit reuse with splitting, merging of freed neighbours, segments kept."""
from __future__ import annotations

import random

from ccprof.profiler.allocator import (
    CachingAllocator,
    parse_alloc_conf,
    reserved_peak,
    round_size,
    segment_size,
    settings_in_force,
)

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


def _random_trace(a: CachingAllocator, seed: int, streams: tuple[int, ...] = (0,)):
    """3000 random allocs (small, mid and large pool sizes, on ``streams``) and frees through ``a``;
    yields the live requests (key -> bytes) after each, then frees them all."""
    rng = random.Random(seed)
    live: dict[int, int] = {}
    for step in range(3000):
        if live and rng.random() < 0.45:
            key = rng.choice(list(live))
            a.free(key)
            del live[key]
        else:
            n = rng.choice([rng.randint(1, 4096), rng.randint(1, 2 * MiB), rng.randint(MiB, 40 * MiB)])
            a.alloc(step, n, rng.choice(streams) if len(streams) > 1 else streams[0])
            live[step] = n
        yield live
    for key in list(live):
        a.free(key)


def test_a_random_trace_keeps_the_books_and_frees_back_to_whole_segments():
    a = CachingAllocator()
    for live in _random_trace(a, seed=0):
        assert a.allocated >= sum(round_size(n) for n in live.values())
        assert a.reserved >= a.allocated
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


# -- the run's settings (PYTORCH_CUDA_ALLOC_CONF / _set_allocator_settings) ----------------------

EXPANDABLE = parse_alloc_conf("expandable_segments:True")


def test_without_settings_the_replay_is_the_default_allocators():
    rng = random.Random(1)
    events, live = [], []
    for step in range(2000):
        if live and rng.random() < 0.45:
            events.append(("free", live.pop(rng.randrange(len(live))), 0, 0))
        else:
            events.append(("alloc", step, rng.choice([rng.randint(1, 2 * MiB), rng.randint(MiB, 40 * MiB)]),
                           rng.choice([0, 0, 7])))
            live.append(step)
    default = reserved_peak(events)
    # settings that change nothing the replay models give the same figure
    assert reserved_peak(events, parse_alloc_conf("")) == default
    assert reserved_peak(events, parse_alloc_conf("garbage_collection_threshold:0.6,expandable_segments:False")) == default
    assert reserved_peak(events, EXPANDABLE) != default


def test_expandable_segments_map_pages_at_the_end_of_one_segment():
    a = CachingAllocator(EXPANDABLE)
    a.alloc(1, 3 * MiB)                 # one 20 MiB page of the large pool; 17 MiB free at its end
    assert a.reserved == 20 * MiB and a.allocated == 3 * MiB
    a.alloc(2, 15 * MiB)                # fits the 17 MiB at the end: split, 2 MiB left
    assert a.reserved == 20 * MiB and a.allocated == 18 * MiB
    # 18 MiB: no free block holds it; the 2 MiB at the end + ceil(16 / 20) = 1 new page
    a.alloc(3, 18 * MiB)
    assert a.reserved == 40 * MiB and a.allocated == 36 * MiB
    assert a._blocks[3][2] == 18 * MiB             # it starts where the free end block started
    a.alloc(4, 100 * 1024)              # the small pool: its own segment, 2 MiB pages
    assert a.reserved == 42 * MiB
    for key in (1, 2, 3, 4):
        a.free(key)
    # freed pages stay mapped (no empty_cache); each segment is one free block again
    assert a.reserved == 42 * MiB and a.allocated == 0
    assert [list(s) for s in a._starts] == [[0], [0]] and all(s[0][1] for s in a._starts)


def test_a_growing_request_fragments_the_default_allocator_not_expandable_segments():
    # a 30 MiB tensor freed, then a 31 MiB one (the batch grew by one): the default allocator's freed
    # 30 MiB segment cannot hold it, a 32 MiB segment is opened (62 MiB); expandable segments mapped
    # ceil(30 / 20) = 2 pages for the first, and the 40 MiB hold the second
    events = [("alloc", 1, 30 * MiB), ("free", 1, 0), ("alloc", 2, 31 * MiB)]
    assert reserved_peak(events)[0] == 30 * MiB + 32 * MiB
    assert reserved_peak(events, EXPANDABLE)[0] == 40 * MiB
    # the 12 MiB then 7 + 7 MiB case above: 32 MiB by default, one 20 MiB page expandable
    events = [("alloc", 1, 12 * MiB), ("free", 1, 0), ("alloc", 2, 7 * MiB), ("alloc", 3, 7 * MiB)]
    assert reserved_peak(events)[0] == 32 * MiB and reserved_peak(events, EXPANDABLE)[0] == 20 * MiB


def test_expandable_segments_can_reserve_more_than_the_default():
    # 15 MiB then 18 MiB live together: default 16 + 18 MiB segments (2 MiB rounding, 34 MiB);
    # expandable: 20 MiB page, then the 5 MiB end + one more page: 40 MiB
    events = [("alloc", 1, 15 * MiB), ("alloc", 2, 18 * MiB)]
    assert reserved_peak(events)[0] == 34 * MiB and reserved_peak(events, EXPANDABLE)[0] == 40 * MiB


def test_expandable_segments_are_one_per_stream_and_pool():
    # stream 7's request cannot use the default stream's freed page: each stream maps its own
    events = [("alloc", 1, 3 * MiB, 0), ("free", 1, 0, 0), ("alloc", 2, 3 * MiB, 7)]
    assert reserved_peak(events, EXPANDABLE)[0] == 40 * MiB
    events = [("alloc", 1, 3 * MiB, 0), ("free", 1, 0, 0), ("alloc", 2, 3 * MiB, 0)]
    assert reserved_peak(events, EXPANDABLE)[0] == 20 * MiB
    # small and large pools of one stream: a 2 MiB and a 20 MiB page
    assert reserved_peak([("alloc", 1, MiB), ("alloc", 2, 3 * MiB)], EXPANDABLE)[0] == 22 * MiB


def test_best_fit_passes_over_the_free_block_at_the_mapped_end():
    a = CachingAllocator(EXPANDABLE)
    a.alloc(1, 12 * MiB)
    a.alloc(2, 4 * MiB)                 # [0, 12) [12, 16) allocated, [16, 20) free at the end
    a.free(1)                           # free: 12 MiB at 0 and 4 MiB at the end
    a.alloc(3, 3 * MiB)                 # the smallest that holds it is the end block, which counts as
    assert a._blocks[3][2] == 0         # what it can grow to: the 12 MiB block at 0 is taken
    assert a.reserved == 20 * MiB


def test_a_random_trace_under_expandable_segments_keeps_the_books():
    a = CachingAllocator(EXPANDABLE)
    for _ in _random_trace(a, seed=2, streams=(0, 3)):
        assert a.reserved == sum(a._mapped.values()) >= a.allocated
    assert a.allocated == 0 and all(list(s) == [0] and s[0][1] for s in a._starts)


def test_max_split_size_keeps_large_free_blocks_whole():
    # default: the freed 30 MiB segment serves the 4 MiB request (split); with max_split_size_mb:20
    # it is not handed to a request below 20 MiB, which opens a 20 MiB segment
    events = [("alloc", 1, 30 * MiB), ("free", 1, 0), ("alloc", 2, 4 * MiB)]
    assert reserved_peak(events)[0] == 30 * MiB
    assert reserved_peak(events, parse_alloc_conf("max_split_size_mb:20"))[0] == 50 * MiB
    # a request above it takes a free block less than 20 MiB larger, whole
    a = CachingAllocator(parse_alloc_conf("max_split_size_mb:20"))
    a.alloc(1, 30 * MiB)
    a.free(1)
    a.alloc(2, 24 * MiB)
    assert a.reserved == 30 * MiB and a.allocated == 30 * MiB
    a.free(2)
    a.alloc(3, 9 * MiB + 512 * 1024)    # below the limit: not from the 30 MiB block
    assert a.reserved == 50 * MiB


def test_roundup_power2_divisions_round_requests():
    assert round_size(1200 * MiB, [4] * 16) == 1280 * MiB            # 1024, 1280, 1536, 1792 MiB
    assert round_size(1024 * MiB, [4] * 16) == 1024 * MiB            # a power of two stays
    assert round_size(3000, [4] * 16) == 3072                        # 2048 + 512 steps
    assert round_size(1000, [4] * 16) == 1024                        # under 512 x 4: 512-byte rounding
    conf = parse_alloc_conf("roundup_power2_divisions:[256:1,512:2,>:4]")
    # intervals from 1 MiB: 256 MiB is interval 8, the first entry also fills those below it
    assert conf.roundup_power2_divisions == [1] * 9 + [2] + [4] * 6
    assert round_size(600 * MiB, conf.roundup_power2_divisions) == 768 * MiB      # 512 MiB interval: 2
    assert round_size(300 * MiB, conf.roundup_power2_divisions) == 300 * MiB      # 1 division: none
    assert parse_alloc_conf("roundup_power2_divisions:4").roundup_power2_divisions == [4] * 16


def test_settings_are_parsed_as_torch_does_and_bad_ones_do_not_crash():
    conf = parse_alloc_conf(" expandable_segments : True ,max_split_size_mb:512,garbage_collection_threshold:0.6,"
                            "pinned_use_cuda_host_register:True,my_option:3", "PYTORCH_CUDA_ALLOC_CONF")
    assert conf.expandable_segments and conf.max_split_size_bytes == 512 * MiB
    assert conf.not_replayed == ["garbage_collection_threshold:0.6", "pinned_use_cuda_host_register:True",
                                 "my_option:3 (a key the replay does not know)"]
    assert conf.rule() == "expandable segments, max_split_size_mb 512" and not conf.errors
    assert conf.describe().startswith("expandable segments, max_split_size_mb 512, from PYTORCH_CUDA_ALLOC_CONF; "
                                      "not replayed: garbage_collection_threshold:0.6")
    for bad in ("expandable_segments", "expandable_segments:yes", "max_split_size_mb:3", "max_split_size_mb:x",
                "roundup_power2_divisions:[3:4]", "roundup_power2_divisions:[256:4", "roundup_power2_divisions:3",
                "garbage_collection_threshold:high", ",,,", ":", "[", "]]:[["):
        conf = parse_alloc_conf(bad)
        assert not conf.expandable_segments and conf.max_split_size_bytes is None
        assert reserved_peak([("alloc", 1, 3 * MiB)], conf)[0] == 20 * MiB
    assert parse_alloc_conf("max_split_size_mb:3").errors == [
        "max_split_size_mb:3 (torch wants a whole number of MiB, at least 20)"]


def test_the_settings_in_force_env_then_calls():
    env = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True,max_split_size_mb:64"}
    assert settings_in_force({}) is None
    conf = settings_in_force(env)
    assert conf.expandable_segments and conf.source == "PYTORCH_CUDA_ALLOC_CONF"
    # PyTorch 2.9+ reads PYTORCH_ALLOC_CONF first (this torch has the device-generic config)
    conf = settings_in_force({**env, "PYTORCH_ALLOC_CONF": "max_split_size_mb:100"})
    assert conf.source == "PYTORCH_ALLOC_CONF" and not conf.expandable_segments
    # a call parses on top: expandable_segments stays, max_split_size goes back to unlimited
    conf = settings_in_force(env, [("garbage_collection_threshold:0.5", "train.py:3")])
    assert conf.expandable_segments and conf.max_split_size_bytes is None
    assert conf.source == "torch.cuda.memory._set_allocator_settings at train.py:3"
    conf = settings_in_force({}, [("expandable_segments:True", "a.py:1"), ("expandable_segments:False", "a.py:9")])
    assert not conf.expandable_segments and conf.text == "expandable_segments:False"


def test_the_settings_round_trip_in_the_profiles_memory_and_older_profiles_load():
    from ccprof._serde import from_dict, to_dict
    from ccprof.artefacts.profile import Memory
    conf = parse_alloc_conf("expandable_segments:True,roundup_power2_divisions:4,foo:1", "PYTORCH_CUDA_ALLOC_CONF")
    memory = Memory(peak_bytes=10, reserved_peak_bytes=20 * MiB, allocator=conf)
    assert from_dict(Memory, to_dict(memory)) == memory
    old = {k: v for k, v in to_dict(memory).items() if k != "allocator"}       # a profile from before the field
    assert from_dict(Memory, old).allocator is None
