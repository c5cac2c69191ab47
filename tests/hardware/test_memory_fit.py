"""The one memory fit (ccprof.hardware.projection.memory_fit): a dry run's reserved peak + NCCL's
buffers per communicator + the CUDA context against the whole GPU; the tensors' peak against 90%
of it otherwise; the same answer in the projection, the dry-run report and the plan."""
from __future__ import annotations

from dataclasses import replace

from ccprof.artefacts.profile import DryRun, Flops, Memory, OpCost, Profile, Steps
from ccprof.hardware import attach, load_catalog
from ccprof.hardware.projection import (
    CUDA_CONTEXT_BYTES,
    communicators,
    memory_fit,
    memory_fit_for,
    nccl_buffer_bytes,
    peak_budget_bytes,
    usable_memory_bytes,
)
from ccprof.reports._view_dry import dry_run_view

CAT = load_catalog(user=False)
H100 = CAT["h100-sxm"]                 # 80 GB: 80e9 bytes
MiB, GiB = 1 << 20, 1 << 30


def test_nccl_buffers_per_communicator_by_hand():
    # Simple 4 MiB + LL 512 KiB + LL128 4,915,200 B = 9,633,792 B a peer, in 2 MiB granules: 10 MiB;
    # 32 channels x 3 peers (ring 1, tree 2) x 10 MiB = 960 MiB; a group of one connects to no peer
    assert nccl_buffer_bytes(8) == nccl_buffer_bytes(128) == 960 * MiB
    assert nccl_buffer_bytes(1) == 0


def test_the_reserved_rule_adds_nccl_and_the_context_against_the_whole_gpu():
    fit = memory_fit(60 * GiB, H100, reserved_bytes=70 * GiB, groups=((8, 1), (2, 1)))
    assert fit.rule == "reserved"
    assert fit.parts == {"reserved": 70 * GiB, "nccl": 2 * 960 * MiB, "cuda_context": CUDA_CONTEXT_BYTES}
    # 80e9 - (70 GiB + 1920 MiB + 512 MiB) = 80e9 - 77,712,064,512 = 2,287,935,488 bytes to spare
    assert fit.capacity_bytes == 80 * 10**9 and fit.need_bytes == 77_712_064_512
    assert fit.fits and fit.margin_bytes == 2_287_935_488
    # 2.2 GiB more reserved and it is over, by the difference
    over = memory_fit(60 * GiB, H100, reserved_bytes=72 * GiB + 256 * MiB, groups=((8, 1), (2, 1)))
    assert not over.fits and over.margin_bytes == 2_287_935_488 - (2 * GiB + 256 * MiB) == -127_983_616


def test_without_the_allocators_replay_the_tensors_peak_keeps_the_ninety_percent_rule():
    fit = memory_fit(70 * 10**9, H100)
    assert fit.rule == "tensors" and fit.parts == {"tensors": 70 * 10**9}
    assert fit.capacity_bytes == 72 * 10**9 and fit.fits and fit.margin_bytes == 2 * 10**9
    assert not memory_fit(73 * 10**9, H100).fits
    assert memory_fit(0, H100).fits                 # an unknown peak fits


def _dry_profile(reserved: int | None, peak: int = 60 * GiB) -> Profile:
    gather = OpCost(op="c10d._allgather_base_", dtype="bfloat16", count=2, phase="forward",
                    attrs={"bytes": 1 << 28, "group": 8, "nodes": 1})
    node_local = OpCost(op="c10d.allreduce_", dtype="float32", count=1, phase="backward",
                        attrs={"bytes": 1 << 20, "group": 8, "nodes": 1})
    return Profile(flops=Flops(per_step=10**15), steps=Steps(step_s=[1.0, 1.0], samples_per_step=8),
                   memory=Memory(peak_bytes=peak, reserved_peak_bytes=reserved), ops=[gather, node_local],
                   dry_run=DryRun(nproc=8))


def test_a_dry_runs_fit_reads_its_reserved_peak_and_its_communicators():
    profile = _dry_profile(reserved=76 * GiB)
    # two collectives on groups of 8 ranks on one node: one communicator (same size and span)
    assert communicators(profile) == ((8, 1),)
    fit = memory_fit_for(profile, H100)
    # 76 GiB + 960 MiB + 512 MiB = 83,147,882,496 > 80e9: over by 3,147,882,496 bytes
    assert fit.rule == "reserved" and not fit.fits and fit.margin_bytes == -3_147_882_496
    # a tweak's peak 4 GiB lower moves the reserved figure by the same 4 GiB: it fits
    after = memory_fit_for(profile, H100, 56 * GiB)
    assert after.parts["reserved"] == 72 * GiB and after.fits
    # the projection's fits is the same answer; a measured run (no dry run) keeps the tensors' rule
    costed = attach(profile, catalog=CAT, gpu="h100-sxm")
    assert not costed.projection["h100-sxm"].fits
    assert costed.projection["h100-sxm"].detail["memory_fit"]["parts"]["nccl"] == 960 * MiB
    measured = replace(profile, dry_run=None)
    assert memory_fit_for(measured, H100).rule == "tensors" and memory_fit_for(measured, H100).fits


def test_the_dry_run_report_states_each_part_of_the_fit():
    costed = attach(_dry_profile(reserved=70 * GiB), catalog=CAT, gpu="h100-sxm")
    view = dry_run_view(costed, CAT)
    line = next(f for f in view.fits if f.startswith("h100-sxm ("))
    # 80e9 bytes = 74.5 GiB; 74.5 GiB - (70 GiB + 960 MiB + 512 MiB) = 3.07 GiB to spare
    assert line == ("h100-sxm (74.5 GiB): fits, 3.07 GiB to spare of the 74.5 GiB on the GPU "
                    "(reserved 70.0 GiB + NCCL buffers 960 MiB + CUDA context 512 MiB)")
    assert "NCCL_BUFFSIZE" in view.fits_note and "CUDA context" in view.fits_note
    # without the replay (an older dry-run profile) the report keeps the 90% rule and says so
    old = dry_run_view(attach(_dry_profile(reserved=None), catalog=CAT, gpu="h100-sxm"), CAT)
    assert "usable (tensors " in next(f for f in old.fits if f.startswith("h100-sxm (")) and "90%" in old.fits_note


def test_the_peak_budget_is_the_rule_inverted():
    """peak_budget_bytes: the largest tensor peak memory_fit_for fits, for the advisors' searches."""
    dry = _dry_profile(reserved=70 * GiB)
    budget = peak_budget_bytes(dry, H100)
    # 80e9 - 960 MiB (its communicator of 8) - 512 MiB - the 10 GiB the reserve runs over the 60 GiB peak
    assert budget == 80 * 10**9 - 960 * MiB - 512 * MiB - 10 * GiB == 67_719_077_888
    assert memory_fit_for(dry, H100, budget).fits and not memory_fit_for(dry, H100, budget + 1).fits
    # a planned world's communicators instead of the traced ones: none (one GPU) leaves 960 MiB more
    alone = peak_budget_bytes(dry, H100, groups=())
    assert alone == budget + 960 * MiB
    assert memory_fit_for(dry, H100, alone, groups=()).fits and not memory_fit_for(dry, H100, alone + 1, groups=()).fits
    # a reserve under the tensors' peak (never traced so, but the fit clamps it to the peak): no overhead
    low = _dry_profile(reserved=50 * GiB)
    b = peak_budget_bytes(low, H100)
    assert b == 80 * 10**9 - 960 * MiB - 512 * MiB
    assert memory_fit_for(low, H100, b).fits and not memory_fit_for(low, H100, b + 1).fits
    # a measured run: the tensors' rule, 90% of the GPU
    measured = replace(dry, dry_run=None)
    assert peak_budget_bytes(measured, H100) == usable_memory_bytes(H100) == 72 * 10**9
