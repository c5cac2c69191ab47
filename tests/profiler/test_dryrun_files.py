"""A dry run leaves the user's files as they were (ccprof.profiler.dryrun_files): real files in
tmp_path, changed inside ``dry_run()`` the ways training scripts change them, are back byte for byte
(and mtime) afterwards; files the dry run made are gone; ccprof's own writes are left alone."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest
import torch

from ccprof.profiler._harness_io import _Progress
from ccprof.profiler.dryrun import dry_run
from ccprof.profiler.dryrun_files import BackupFailed


def _file(path, data: bytes, mtime: int = 1_000_000_000):
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def _same(path, data: bytes, mtime: int = 1_000_000_000) -> bool:
    return path.read_bytes() == data and os.stat(path).st_mtime == mtime


def _notes(log) -> dict[str, tuple[str, int]]:
    return {r.what: (r.file, r.line) for r in log.records.values()}


def test_a_checkpoint_truncated_by_open_wb_is_put_back_byte_for_byte(tmp_path):
    ckpt = _file(tmp_path / "ckpt.pt", bytes(range(256)) * 64)
    with dry_run():
        with open(ckpt, "wb") as f:
            f.write(b"")
        assert ckpt.stat().st_size == 0          # the script saw its own write
    assert _same(ckpt, bytes(range(256)) * 64)


def test_an_appended_log_is_put_back(tmp_path):
    log_file = _file(tmp_path / "train.log", b"epoch 3 loss 2.31\n")
    with dry_run():
        with open(log_file, "a") as f:
            f.write("step 0 loss 1.0000\n")
    assert _same(log_file, b"epoch 3 loss 2.31\n")


def test_os_replace_onto_an_existing_file_is_put_back_and_its_source_removed(tmp_path):
    ckpt = _file(tmp_path / "ckpt.pt", b"OLD")
    with dry_run() as log:
        (tmp_path / "ckpt.pt.tmp").write_bytes(b"NEW")      # the atomic-save idiom
        os.replace(tmp_path / "ckpt.pt.tmp", ckpt)
    assert _same(ckpt, b"OLD") and sorted(os.listdir(tmp_path)) == ["ckpt.pt"]
    assert any(what.startswith(f"{ckpt} replaced by") for what in _notes(log))


def test_a_removed_file_is_put_back(tmp_path):
    old = _file(tmp_path / "checkpoint-100.pt", b"weights")
    with dry_run():
        os.remove(old)
        assert not old.exists()
    assert _same(old, b"weights")


def test_files_and_folders_the_dry_run_made_are_removed_and_folders_that_were_there_stay(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    with dry_run():
        (tmp_path / "metrics.jsonl").write_text('{"loss": 1.0}\n')
        os.makedirs(runs / "exp1" / "events")
        (runs / "exp1" / "events" / "out.tfevents").write_bytes(b"\0")
        with open(runs / "notes.txt", "x") as f:
            f.write("made")
    assert sorted(os.listdir(tmp_path)) == ["runs"] and os.listdir(runs) == []


def test_a_folder_removed_by_rmtree_or_moved_comes_back_as_it_was(tmp_path):
    old = tmp_path / "checkpoints"
    (old / "step-10").mkdir(parents=True)
    _file(old / "step-10" / "model.pt", b"ten")
    moved = tmp_path / "runs"
    moved.mkdir()
    _file(moved / "a.log", b"a")
    with dry_run():
        shutil.rmtree(old)
        os.rename(moved, tmp_path / "runs.old")
    assert _same(old / "step-10" / "model.pt", b"ten")
    assert _same(moved / "a.log", b"a") and not (tmp_path / "runs.old").exists()


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_files_are_put_back_when_the_script_fails_inside_the_dry_run(tmp_path, error):
    ckpt = _file(tmp_path / "ckpt.pt", b"OLD")
    with pytest.raises(error):
        with dry_run():
            open(ckpt, "wb").close()
            (tmp_path / "made.txt").write_text("x")
            raise error("the script failed")
    assert _same(ckpt, b"OLD") and os.listdir(tmp_path) == ["ckpt.pt"]


def test_torch_save_through_open_wb_leaves_the_old_checkpoint_loadable_with_its_values(tmp_path):
    ckpt = tmp_path / "model.pt"
    trained = torch.nn.Linear(8, 4)
    torch.save(trained.state_dict(), ckpt)
    with dry_run():
        model = torch.nn.Linear(8, 4)       # fake parameters: torch.save writes nothing
        with open(ckpt, "wb") as f:
            torch.save(model.state_dict(), f)
    loaded = torch.load(ckpt)
    assert torch.equal(loaded["weight"], trained.weight.detach()) and torch.equal(loaded["bias"], trained.bias.detach())


def test_the_note_names_the_file_and_the_scripts_line(tmp_path):
    ckpt = _file(tmp_path / "ckpt.pt", b"OLD")
    with dry_run() as log:
        open(ckpt, "wb").close(); line = sys._getframe().f_lineno                 # noqa: E702
        (tmp_path / "train.log").write_text("x"); made_at = sys._getframe().f_lineno  # noqa: E702
    notes = _notes(log)
    assert notes[f"{ckpt} opened for writing ('w'): a copy was kept and is put back after the dry run"] == \
        (__file__, line)
    made = [w for w in notes if w.startswith(f"{tmp_path / 'train.log'} made by the dry run: removed after it")]
    assert [notes[w] for w in made] == [(__file__, made_at)]


def test_ccprofs_own_writes_are_left_alone(tmp_path):
    progress = _file(tmp_path / "progress.jsonl", b'{"event": "start"}\n')
    run_folder = tempfile.mkdtemp(prefix="ccprof-")       # like the runner's, where the profile goes
    try:
        with dry_run() as log:
            events = _Progress(str(progress))               # ccprof's code opens it
            events(event="step", n=1)
            events.fh.close()
            with open(os.path.join(run_folder, "profile.json"), "w") as f:
                f.write("{}")
            with open(progress, "a") as f:                   # the same file, by the script: guarded
                f.write("the script's line\n")
        assert progress.read_bytes() == b'{"event": "start"}\n{"event": "step", "n": 1}\n'
        assert open(os.path.join(run_folder, "profile.json")).read() == "{}"
        assert list(_notes(log)) == [f"{progress} opened for writing ('a'): a copy was kept and is put back after "
                                     "the dry run"]
    finally:
        shutil.rmtree(run_folder)


def test_a_copy_that_cannot_be_made_refuses_the_change_with_the_scripts_line(tmp_path, monkeypatch):
    ckpt = _file(tmp_path / "ckpt.pt", b"OLD")
    not_a_folder = _file(tmp_path / "tmp", b"")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_folder))     # where the copies go (as TMPDIR)
    with pytest.raises(BackupFailed) as failed:
        with dry_run():
            line = sys._getframe().f_lineno + 1
            open(ckpt, "wb")
    assert f"could not copy {ckpt} into {not_a_folder}" in str(failed.value)
    assert f"at {__file__}:{line} was refused and the file is unchanged" in str(failed.value)
    assert _same(ckpt, b"OLD")


def test_a_file_renamed_away_and_a_symbolic_link_removed_or_written_through_come_back(tmp_path):
    old = _file(tmp_path / "best.pt", b"best")
    target = _file(tmp_path / "last-real.pt", b"last")
    link = tmp_path / "last.pt"
    link.symlink_to(target.name)
    with dry_run():
        os.rename(old, tmp_path / "best-old.pt")
        link.write_bytes(b"new")                # through the link: the target changes
        os.remove(link)
    assert _same(old, b"best") and not (tmp_path / "best-old.pt").exists()
    assert os.readlink(link) == "last-real.pt" and _same(target, b"last")


def test_a_folder_the_dry_run_made_and_renamed_into_place_is_removed(tmp_path):
    (tmp_path / "checkpoint-10").mkdir()            # an empty folder of the user's it replaces
    with dry_run():
        os.makedirs(tmp_path / "tmp-checkpoint")
        (tmp_path / "tmp-checkpoint" / "model.safetensors").write_bytes(b"\0")
        os.rename(tmp_path / "tmp-checkpoint", tmp_path / "checkpoint-10")
    assert os.listdir(tmp_path) == ["checkpoint-10"] and os.listdir(tmp_path / "checkpoint-10") == []


def _stage_writes(role: str, log_path: str, made_path: str, listed: str, events: dict, conn) -> None:
    """One of two dry runs at once (a pipeline's stages) that both append to the same log, the
    first of them making a file the second appends to as well."""
    from ccprof.profiler._dry_journal import BACKUPS_ENV, DEFER_ENV
    from ccprof.profiler.dryrun import StandInLog
    from ccprof.profiler.dryrun_files import guard_files
    os.environ.update({BACKUPS_ENV: listed, DEFER_ENV: "1"})
    def writes(rank: int, made_mode: str) -> None:
        with open(log_path, "a") as f:
            f.write(f"rank {rank} step 0 loss 1.0000\n")
        with open(made_path, made_mode) as f:
            f.write(f"rank {rank}\n")
    try:
        if role == "first":
            with guard_files(StandInLog()):
                writes(0, "w")
                events["first_wrote"].set()
                assert events["second_wrote"].wait(60)
            events["first_left"].set()              # the first stage leaves while the second still runs
        else:
            assert events["first_wrote"].wait(60)
            with guard_files(StandInLog()):
                writes(1, "a")
                events["second_wrote"].set()
                assert events["first_left"].wait(60)
        conn.send("ok")
    except BaseException as exc:        # noqa: BLE001 - the test says what went wrong in the child
        conn.send(repr(exc))


def test_two_dry_runs_at_once_appending_to_one_log_leave_it_as_it_was(tmp_path):
    import multiprocessing

    from ccprof.profiler._dry_journal import undo_left
    log_file = _file(tmp_path / "train.log", b"epoch 3 loss 2.31\n")
    made = tmp_path / "ranks.txt"
    listed = str(tmp_path / "dry-backups")
    ctx = multiprocessing.get_context("spawn")
    events = {k: ctx.Event() for k in ("first_wrote", "second_wrote", "first_left")}
    pipes = {role: ctx.Pipe() for role in ("first", "second")}
    procs = [ctx.Process(target=_stage_writes, args=(role, str(log_file), str(made), listed, events, pipes[role][1]))
             for role in ("first", "second")]
    for p in procs:
        p.start()
    assert [pipes[role][0].recv() for role in ("first", "second")] == ["ok", "ok"]
    for p in procs:
        p.join(60)
    # each left its changes (the first one's undoing alone would put back a copy holding none of the second's
    # and the second's a copy holding the first's append): the parent undoes both, in the one order of changes
    assert log_file.read_bytes() == b"epoch 3 loss 2.31\nrank 0 step 0 loss 1.0000\nrank 1 step 0 loss 1.0000\n"
    assert undo_left(listed) == []
    assert _same(log_file, b"epoch 3 loss 2.31\n") and not made.exists()
    assert sorted(os.listdir(tmp_path)) == ["dry-backups", "train.log"]
