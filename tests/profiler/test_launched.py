"""`ccprof run`'s pieces without a launcher: the launcher's env, the merge of the ranks'
profiles, the straggler rule and the report's per-rank table (the launches themselves:
tests/e2e/test_launched.py)."""
from __future__ import annotations

from dataclasses import replace

from ccprof.profiler.launched import (
    STRAGGLER_EXCESS_FRAC,
    Launch,
    flag_stragglers,
    gather_profiles,
    launch_from_env,
    merge_profiles,
)
from ccprof.reports.view import build_report_view
from tests.helpers.profiles import hand_profile


def at(rank: int, node: int = 0) -> Launch:
    return Launch(rank=rank, world_size=4, local_rank=rank % 2, node_rank=node, hostname=f"host{node}",
                  launcher="torchrun")


def ranked(step_s: list[float], data_s: float, backward_s: float):
    p = hand_profile()
    return replace(p, steps=replace(p.steps, step_s=step_s,
                                    phase_s={**p.steps.phase_s, "data": data_s, "backward": backward_s}))


def test_torchrun_env_is_read_as_it_is():
    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "GROUP_RANK": "2"}
    lc = launch_from_env(env)
    assert (lc.rank, lc.world_size, lc.local_rank, lc.node_rank, lc.launcher) == (5, 8, 1, 2, "torchrun")


def test_slurm_env_becomes_torchrun_names_for_the_script():
    env = {"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
           "SLURM_LAUNCH_NODE_IPADDR": "10.0.0.7"}
    lc = launch_from_env(env)
    assert (lc.rank, lc.world_size, lc.local_rank, lc.node_rank, lc.launcher) == (3, 4, 1, 1, "slurm")
    # the script's own init_process_group("nccl") reads these
    assert env["RANK"] == "3" and env["WORLD_SIZE"] == "4" and env["LOCAL_RANK"] == "1"
    assert env["MASTER_ADDR"] == "10.0.0.7" and env["MASTER_PORT"] == "29500"
    kept = {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "MASTER_ADDR": "n1", "MASTER_PORT": "1234"}
    launch_from_env(kept)
    assert (kept["MASTER_ADDR"], kept["MASTER_PORT"]) == ("n1", "1234")      # the user's own win


def test_no_launcher_is_one_process_and_gathers_its_own():
    lc = launch_from_env({})
    assert (lc.rank, lc.world_size, lc.launcher) == (0, 1, "none")
    p = hand_profile()
    assert gather_profiles(p, lc) == [(p, lc)]


def test_merge_rows_per_rank_and_the_straggler_by_its_data_wait():
    # DDP: every rank's step is ~100 ms (the all-reduce in backward waits for the slowest); rank 3
    # waits 40 ms for data, the others wait those 40 ms inside backward
    fast = [ranked([0.100, 0.100], data_s=0.001, backward_s=0.080) for _ in range(3)]
    slow = ranked([0.100, 0.102], data_s=0.041, backward_s=0.040)
    merged = merge_profiles([(slow, at(3, 1)), (fast[0], at(0, 0)), (fast[1], at(1, 0)), (fast[2], at(2, 1))])
    assert merged.world_size == 4 and merged.rank == 0
    assert [r["rank"] for r in merged.ranks] == [0, 1, 2, 3]
    assert [r["node_rank"] for r in merged.ranks] == [0, 0, 1, 1]
    assert [r["straggler"] for r in merged.ranks] == [False, False, False, True]
    # own work outside backward, from hand_profile's phases (forward 0.3, optimizer 0.1, other 0.1)
    # and the data wait: fast 0.501, slow 0.541; median own 0.501: excess 0.040 over the median
    # step over the ranks, 0.100 -> 1 + 0.040 / 0.100 = 1.40
    assert abs(merged.ranks[3]["straggler_factor"] - 1.40) < 0.005
    assert merged.steps.step_s == [0.100, 0.102]                   # per step, the slowest rank
    assert merged.steps.samples_per_step == 4 * 8                  # the global batch


def test_a_rank_with_a_longer_step_is_a_straggler_without_ddp():
    rows = [{"step_s": s, "own_s": 0.5 * s} for s in (1.0, 1.0, 1.05, 1.5)]
    flag_stragglers(rows)
    # median step 1.025; rank 3: 1.5 - 1.025 = 0.475 over it -> 1.46x; rank 2's 2.4% is noise
    assert [r["straggler"] for r in rows] == [False, False, False, True]
    assert rows[2]["straggler_factor"] < 1 + STRAGGLER_EXCESS_FRAC


def test_sub_millisecond_differences_of_tiny_steps_are_noise():
    # 4 ms steps: median own work 1.55 ms; rank 1 is 0.55 ms over it (0.55 / 4.05 = 14% of the
    # median step), under the 2 ms floor
    rows = [{"step_s": 0.0040, "own_s": 0.0010}, {"step_s": 0.0041, "own_s": 0.0021}]
    flag_stragglers(rows)
    assert [r["straggler"] for r in rows] == [False, False]
    assert rows[1]["straggler_factor"] > 1 + STRAGGLER_EXCESS_FRAC


def test_report_shows_a_row_per_rank_and_names_the_straggler():
    fast = ranked([0.1, 0.1], data_s=0.001, backward_s=0.08)
    slow = ranked([0.1, 0.1], data_s=0.041, backward_s=0.04)
    merged = merge_profiles([(fast, at(0, 0)), (fast, at(1, 0)), (fast, at(2, 1)), (slow, at(3, 1))])
    v = build_report_view(merged)
    assert [r.rank for r in v.ranks] == [0, 1, 2, 3]
    assert v.ranks[2].node == "node 1 (host1), local rank 0"
    assert v.ranks[3].straggler_text.startswith("straggler, 1.4") and v.ranks[3].data_text == "41.0 ms"
    assert "10%" in v.ranks_note and "2 ms" in v.ranks_note and "VLDB 2020" in v.ranks_note
    assert build_report_view(hand_profile()).ranks == []           # one process: no table
