"""The journal of a dry run's changes to the user's files (``dryrun_files``) and how each is
undone: by the dry run's own process when it leaves, or by the runner after a process that was
killed outright (SIGKILL, a crash in native code) could not. No torch here: the runner imports it.

A journal is one JSON list per line, written before the change it undoes happens:
``["restore", path, copy]`` (put the copy back at path), ``["remove", path]`` (a file the dry run
made), ``["rmdir", path]`` (a folder it made, removed when empty), ``["rmtree", path]`` (a folder it
made and renamed), ``["mkdir", path, mode]``, ``["relink", path, target]`` (a symbolic link),
``["unmove", path, moved_to]`` (a folder renamed), ``["copytree", path, copy]`` (a folder removed);
each line ends with ``{"t": ns}``, when it was written (``time.monotonic_ns``, after a file's copy:
the machine's one clock), so that the journals of dry runs that ran at once (a pipeline's stages,
which defer their undoing to the process that started them: ``DEFER_ENV``) are undone in the one
order of their changes, last first: a log every stage appended to gets the first stage's copy back.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys

__all__ = ["BACKUPS_ENV", "DEFER_ENV", "JOURNAL", "undo_all", "undo_left"]

JOURNAL = "journal.jsonl"
# a file the runner names: each dry run's folder of copies is listed there, so that the runner can
# undo what a process killed outright could not
BACKUPS_ENV = "CCPROF_DRY_BACKUPS"
# set (with BACKUPS_ENV) for dry runs that run at once: each leaves its journal for undo_left, which
# undoes them all in one order after they all ended (one run's undoing alone could put back a copy
# that holds another's changes)
DEFER_ENV = "CCPROF_DRY_DEFER_UNDO"


def undo_all(actions: list, folder: str | None) -> list[str]:
    """Undo ``actions`` last first; remove ``folder`` when all went well, else say so on stderr
    (the profile may already be written: it is the one place left) and keep it."""
    problems = []
    for action in reversed(actions):
        try:
            _undo_one(action)
        except (OSError, shutil.Error) as exc:
            problems.append(f"{action[1]}: {exc}")
    if problems:
        where = folder if folder is not None else "the folders named below"
        sys.stderr.write("ccprof --dry-run could not put back what the script changed; the copies are in "
                         f"{where}:\n" + "".join(f"  {p}\n" for p in problems))
        if folder is not None:          # tried once: the runner does not try (and say it) again
            with contextlib.suppress(OSError):
                os.replace(os.path.join(folder, JOURNAL), os.path.join(folder, f"tried-{JOURNAL}"))
    elif folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
    return problems


def undo_left(listed: str) -> list[str]:
    """After the process of a dry run ended: undo what it could not (it was killed outright), from
    the journals of the folders listed in the file ``listed`` (``BACKUPS_ENV``). Returns what could
    not be put back; a folder its process cleaned up is gone and skipped."""
    try:
        with open(listed, encoding="utf-8") as f:
            folders = [line.strip() for line in f if line.strip()]
    except OSError:
        return []
    journals: dict[str, list] = {}
    for folder in folders:
        try:
            with open(os.path.join(folder, JOURNAL), encoding="utf-8") as f:
                journals[folder] = [tuple(json.loads(line)) for line in f if line.endswith("\n")]
        except (OSError, ValueError):
            continue
    if len(journals) < 2:
        return [p for folder, actions in journals.items() for p in undo_all(actions, folder)]
    # several runs' changes: undone together, last first across all of them
    stamped = sorted((_stamp(a), n, i, a) for n, actions in enumerate(journals.values())
                     for i, a in enumerate(actions))
    problems = undo_all([a for *_, a in stamped], None)
    for folder in journals:
        if problems:
            with contextlib.suppress(OSError):
                os.replace(os.path.join(folder, JOURNAL), os.path.join(folder, f"tried-{JOURNAL}"))
            sys.stderr.write(f"ccprof --dry-run: the copies of the files above are in {folder}\n")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return problems


def _stamp(action: tuple) -> int:
    """When a journal's line was written (0 for a line without its time)."""
    last = action[-1]
    return int(last["t"]) if isinstance(last, dict) else 0


def _undo_one(action: tuple) -> None:
    kind, path = action[0], action[1]
    if kind in ("restore", "copytree") and not os.path.lexists(action[2]):
        return                                  # put back already (a replayed journal)
    if kind == "restore":
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            os.replace(action[2], path)         # a new file: a handle left open writes elsewhere
        except OSError:                         # another file system: copy beside it, then replace
            beside = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.ccprof-restore")
            shutil.copy2(action[2], beside)
            os.replace(beside, path)
            os.remove(action[2])
    elif kind == "remove":
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
    elif kind == "rmtree":
        shutil.rmtree(path, ignore_errors=True)
    elif kind == "rmdir":
        with contextlib.suppress(OSError):
            os.rmdir(path)                      # a folder that still holds something stays
    elif kind == "mkdir":
        os.makedirs(path, action[2], exist_ok=True)
    elif kind == "relink":
        if os.path.lexists(path):
            os.remove(path)
        os.symlink(action[2], path)
    elif kind == "unmove":
        if os.path.lexists(action[2]) and not os.path.lexists(path):
            os.rename(action[2], path)
    elif kind == "copytree":
        shutil.copytree(action[2], path, symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(action[2], ignore_errors=True)
