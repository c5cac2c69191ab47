"""Pipelines in the world dry run (ccprof.profiler.dryrun_pipe): rank 0's dry run finds the stages and
their ranks at the schedule's first step; a stage traced as its own rank receives the other stage's
shapes through the object channel, sends its own back, and its tensor sends and receives complete
at once (recorded as collective rows on the link between the two ranks)."""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from ccprof.profiler.dryrun import describe, dry_run
from ccprof.profiler.dryrun_pipe import ObjectChannel, PipelineFound, pipeline_path
from ccprof.profiler.flops import FlopPass

WIDTH, VOCAB, MICRO = 32, 64, 4


@pytest.fixture
def run_dir():
    """A folder like the runner's (``<tmp>/ccprof-*``): the dry run's file guard leaves ccprof's own files there."""
    path = tempfile.mkdtemp(prefix="ccprof-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _stage(index: int) -> nn.Module:
    """Stage 0 embeds tokens (B, T) -> (B, T, C); stage 1 projects to the vocabulary (B, T, V)."""
    if index == 0:
        return nn.Sequential(nn.Embedding(VOCAB, WIDTH), nn.Linear(WIDTH, WIDTH))
    return nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.GELU(), nn.Linear(WIDTH, VOCAB))


def _loss(logits, targets):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def _schedule(rank: int):
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B
    dist.init_process_group("nccl")
    mod = _stage(rank).cuda()
    stage = PipelineStage(mod, rank, 2, torch.device("cuda", rank))
    return mod, Schedule1F1B(stage, n_microbatches=MICRO, loss_fn=_loss)


def test_rank_0_finds_the_pipeline_and_its_ranks_at_the_first_step(run_dir):
    out = os.path.join(run_dir, "profile.json")
    with pytest.raises(PipelineFound):
        with dry_run(cuda=True, world=(2, 1), out=out, traced=[]):
            _, schedule = _schedule(0)
            schedule.step(torch.randint(0, VOCAB, (8, 16), device="cuda"))
    found = json.loads(open(pipeline_path(out)).read())
    assert found == {"schedule": "Schedule1F1B", "microbatches": MICRO, "num_stages": 2, "stage_rank": [0, 1],
                     "stages": [0]}
    assert not dist.is_initialized()


def test_the_last_stage_traced_as_rank_1_gets_stage_0s_shapes_and_sends_its_gradients_shapes_back(run_dir):
    from torch.distributed.pipelining._utils import extract_tensor_metas
    from torch.distributed.pipelining.stage import _StageBackwardMeta, _StageForwardMeta
    out = os.path.join(run_dir, "profile.json")
    # what stage 0's dry run sends rank 1 before the first step: its output's shapes, (B/m, T, C) = (2, 16, 32)
    sent = _StageForwardMeta(forward_metas=extract_tensor_metas((torch.empty(2, 16, WIDTH, requires_grad=True),)))
    ObjectChannel(out, rank=0).send([sent], 1)
    with dry_run(cuda=True, world=(2, 1), rank=1, out=out, traced=[0, 1]) as log:
        assert (os.environ["RANK"], os.environ["LOCAL_RANK"]) == ("1", "1")
        mod, schedule = _schedule(1)
        assert dist.get_rank() == 1
        opt = torch.optim.AdamW(mod.parameters())
        schedule.step(target=torch.randint(0, VOCAB, (8, 16), device="cuda"))      # the shapes' exchange
        fp = FlopPass({"": mod})
        fp.start()
        schedule.step(target=torch.randint(0, VOCAB, (8, 16), device="cuda"))
        opt.step()
        flops, ops = fp.stop()
    # its input gradients' shapes reached stage 0's channel: what stage 0 would receive
    back = ObjectChannel(out, rank=0).recv(1)
    assert isinstance(back[0], _StageBackwardMeta) and back[0].backward_metas[0].shape == (2, 16, WIDTH)
    assert describe(log).pipeline.stage_rank == [0, 1] and describe(log, rank=1).rank == 1
    p2p = sorted((o.op, o.phase, o.count, o.attrs["bytes"], o.attrs["group"], o.attrs["nodes"])
                 for o in ops if o.op.startswith("c10d."))
    # one activation received and one gradient sent per microbatch: (2, 16, 32) fp32 = 4096 bytes each; each
    # booked to its schedule action's phase (the gradient's send runs after the backward, outside autograd,
    # and with no phase set the pass books work to "forward": the tag alone makes it "backward")
    assert p2p == [("c10d.recv_", "forward", MICRO, 4096, 2, 1), ("c10d.send", "backward", MICRO, 4096, 2, 1)]
    # forward and backward of (8, 16) tokens through 32 -> 32 -> 64: 3 x 2 x 128 x (32 x 32 + 32 x 64)
    assert flops.model_per_step == 3 * 2 * 128 * (WIDTH * WIDTH + WIDTH * VOCAB)
    assert not dist.is_initialized()


def _receive(out: str, conn) -> None:
    conn.send(ObjectChannel(out, rank=1).recv(0))


def test_the_object_channel_carries_an_object_to_another_process_that_waits_for_it(run_dir):
    out = os.path.join(run_dir, "profile.json")
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    waiting = ctx.Process(target=_receive, args=(out, theirs))
    waiting.start()
    ObjectChannel(out, rank=0).send({"shapes": [[2, 16, 32]]}, 1)
    assert mine.recv() == {"shapes": [[2, 16, 32]]}
    waiting.join(timeout=60)
    assert waiting.exitcode == 0


def _waiting_recv(channel, got: list, done) -> None:
    try:
        got.append(channel.recv(1))
    except BaseException as exc:        # noqa: BLE001 - the test reads what the wait ended with
        got.append(exc)
    done.set()


def test_a_stage_waiting_for_its_peer_stops_at_once_when_the_peer_aborts(run_dir):
    import threading

    from ccprof.profiler.dryrun import DryRunUnsupported
    from ccprof.profiler.dryrun_pipe import abort_stages
    out = os.path.join(run_dir, "profile.json")
    got, done = [], threading.Event()
    waiting = threading.Thread(target=_waiting_recv, args=(ObjectChannel(out, rank=0, timeout_s=600), got, done),
                               daemon=True)
    waiting.start()
    abort_stages(out, 1, "RuntimeError: boom (pipe_train.py:80)")
    assert done.wait(60)                # well within the channel's 600 s
    assert isinstance(got[0], DryRunUnsupported)
    assert str(got[0]) == "stage on rank 1 stopped: RuntimeError: boom (pipe_train.py:80)"


def test_a_stage_waiting_for_an_object_never_sent_stops_at_its_deadline(run_dir):
    from ccprof.profiler.dryrun import DryRunUnsupported
    with pytest.raises(DryRunUnsupported, match="no message from rank 1 within 0.2 s"):
        ObjectChannel(os.path.join(run_dir, "profile.json"), rank=0, timeout_s=0.2).recv(1)


def _stage_profile(peak_bytes: int, flops: int, error=None):
    """A stage's profile whose optimizer updates ``peak_bytes`` parameters and whose step makes ``flops`` // 7 module calls."""
    from ccprof.artefacts.profile import DryRun, Flops, HostInfo, Memory, OptimizerInfo, OptimizerSection, Profile
    return Profile(memory=Memory(peak_bytes=peak_bytes), flops=Flops(per_step=flops), dry_run=DryRun(nproc=2),
                   optimizer=OptimizerSection([OptimizerInfo(class_="AdamW", param_count=peak_bytes)]),
                   host=HostInfo(module_calls_per_step=flops // 7), fusion={"forward": {"gaps": flops}},
                   error=error, status="complete" if error is None else "partial")


def test_the_merged_profile_is_the_heaviest_stage_with_every_rank_beside_it(run_dir):
    from ccprof.artefacts.profile import ErrorInfo
    from ccprof.profiler.dryrun_pipe import merge_stages, stage_out
    out = os.path.join(run_dir, "profile.json")
    with open(pipeline_path(out), "w") as fh:
        json.dump({"schedule": "ScheduleInterleaved1F1B", "microbatches": 8, "num_stages": 4,
                   "stage_rank": [0, 1, 0, 1], "stages": [0, 2]}, fh)
    stages = {stage_out(out, 0): _stage_profile(100, 7), stage_out(out, 1): _stage_profile(300, 9)}
    merged = merge_stages(out, stages.get)
    assert merged.dry_run.rank == 1 and merged.memory.peak_bytes == 300 and merged.error is None
    pipe = merged.dry_run.pipeline
    assert [(r.rank, r.stages, r.peak_bytes, r.flops_per_step) for r in pipe.ranks] == [(0, [0, 2], 100, 7),
                                                                                      (1, [1, 3], 300, 9)]
    # what costing each rank reads of its own run: its optimizer, host counts and fusion groups
    assert [(r.optimizers[0].param_count, r.host.module_calls_per_step, r.fusion) for r in pipe.ranks] == \
        [(100, 1, {"forward": {"gaps": 7}}), (300, 1, {"forward": {"gaps": 9}})]
    # a stage's failure is the merged profile's, named by its rank and stages; a missing rank is said
    stages[stage_out(out, 0)] = _stage_profile(100, 7, ErrorInfo(kind="script_error", message="boom"))
    assert merge_stages(out, stages.get).error.message == "rank 0 (pipeline stage(s) [0, 2]): boom"
    del stages[stage_out(out, 0)]
    assert merge_stages(out, stages.get).error.message == "pipeline rank(s) 0 wrote no profile"
    # rank 0 crashed without a profile; rank 1 was then stopped: the crash is the cause, not the stop
    stages[stage_out(out, 1)] = _stage_profile(300, 9, ErrorInfo(kind="terminated", message="stopped by SIGTERM"))
    assert merge_stages(out, stages.get).error.message == "pipeline rank(s) 0 wrote no profile"
    stages[stage_out(out, 1)] = _stage_profile(300, 9, ErrorInfo(
        kind="dry_run_unsupported", message="stage on rank 0 stopped: exit code -9 without a profile"))
    assert merge_stages(out, stages.get).error.message == "pipeline rank(s) 0 wrote no profile"
    # both wrote one: the stage that failed by itself, not the one its failure stopped
    stages[stage_out(out, 0)] = _stage_profile(100, 7, ErrorInfo(kind="script_error", message="boom"))
    assert merge_stages(out, stages.get).error.message == "rank 0 (pipeline stage(s) [0, 2]): boom"


def test_the_schedules_hook_is_found_on_this_torch_and_not_on_one_without_it():
    # torch >= 2.4 is allowed; the hook a pipeline is found by (_PipelineSchedule._initialize_pp_stages) is private
    from types import SimpleNamespace

    from torch.distributed.pipelining import schedules
    from torch.distributed.pipelining.stage import _PipelineStageBase

    from ccprof.profiler.dryrun_pipe import schedule_hook
    base, original = schedule_hook(schedules, _PipelineStageBase)
    assert base is schedules._PipelineSchedule and original is schedules._PipelineSchedule._initialize_pp_stages
    older = SimpleNamespace(_PipelineSchedule=type("_PipelineSchedule", (), {}))     # a schedules module before it
    assert schedule_hook(older, _PipelineStageBase) is None
    assert schedule_hook(SimpleNamespace(), _PipelineStageBase) is None
    assert schedule_hook(schedules, type("_PipelineStageBase", (), {})) is None


def test_a_torch_without_the_schedules_hook_still_dry_runs_ddp_and_stops_at_a_stages_object(run_dir, monkeypatch):
    from ccprof.profiler import dryrun_pipe
    from ccprof.profiler.dryrun import DryRunUnsupported
    from ccprof.profiler.dryrun_dist import WORLD_ENV
    monkeypatch.setattr(dryrun_pipe, "schedule_hook", lambda *args: None)     # what schedule_hook says there
    env = {k: os.environ.get(k) for k in WORLD_ENV}
    init = dist.init_process_group
    out = os.path.join(run_dir, "profile.json")
    with dry_run(cuda=True, world=(2, 1), out=out, traced=[]):
        dist.init_process_group("nccl")
        model = nn.Linear(8, 8).cuda()
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[0])
        ddp(torch.randn(4, 8, device="cuda")).sum().backward()
        assert model.weight.grad.shape == (8, 8)
    # a stage's object from another rank is then unknown, as any rank's is
    with dry_run(cuda=True, world=(2, 1), rank=1, out=out, traced=[0, 1]):
        dist.init_process_group("nccl")
        with pytest.raises(DryRunUnsupported, match="recv_object_list"):
            dist.recv_object_list([None], src=0)
    assert {k: os.environ.get(k) for k in WORLD_ENV} == env and dist.init_process_group is init
    assert not dist.is_initialized() and not os.path.exists(pipeline_path(out))


def test_a_failure_while_the_world_is_set_up_restores_the_environment_and_torch(run_dir, monkeypatch):
    from ccprof.profiler import dryrun_pipe
    from ccprof.profiler.dryrun_dist import WORLD_ENV

    def no_channel(*args, **kwargs):
        raise OSError("the channel's folder is gone")
    monkeypatch.setattr(dryrun_pipe.ObjectChannel, "__init__", no_channel)
    env = {k: os.environ.get(k) for k in WORLD_ENV}
    init = dist.init_process_group
    with pytest.raises(OSError, match="folder is gone"):
        with dry_run(cuda=True, world=(2, 1), rank=1, out=os.path.join(run_dir, "profile.json"), traced=[0, 1]):
            pass
    assert {k: os.environ.get(k) for k in WORLD_ENV} == env and dist.init_process_group is init
