"""--dry-run leaves the user's files as they were.

A dry run's values are stand-ins (``dryrun``), so nothing the script writes during one is worth
keeping, and what it overwrites must come back: ``with open(args.save, "wb") as f: torch.save(model, f)``
truncates the user's checkpoint before ``torch.save`` (which writes nothing in a dry run) is called.

``guard_files(log)`` watches, through a Python audit hook (``sys.addaudithook``; the events of
https://docs.python.org/3/library/audit_events.html as CPython 3.11 raises them), every change the
script or a library working for it makes to a path: ``open`` for writing (``w``, ``a``, ``x``, ``+``,
or ``os.open`` with a write flag), ``os.truncate``, ``os.utime``, ``os.remove``/``os.unlink``,
``os.rename``/``os.replace`` (source and destination), ``os.link``/``os.symlink``, ``os.mkdir``,
``os.rmdir`` and ``shutil.rmtree`` (``shutil.move`` and ``shutil.copy*`` raise the events above).
The first time a path is touched:

- an existing file is copied (``shutil.copy2``: bytes, mode and mtime) into a folder made for this
  dry run, before the change happens; a folder ``shutil.rmtree`` removes is copied whole; a folder
  renamed is renamed back. Where the copy fails (a full disk, permissions) the script's call is
  refused with ``BackupFailed`` naming the file and the script's line: the file is unchanged;
- a path that did not exist is remembered as made by the dry run.

On leaving the dry run (its end, an exception, Ctrl-C, SIGTERM's unwinding, ``sys.exit`` and
``os._exit``) every change is undone, last first: each copy is put back at its path (bytes, mode
and mtime, as a new file, so a handle the script left open cannot write into it), the files the
dry run made are removed (their contents come from stand-ins: a log of losses of 1.0, a 0-byte
checkpoint that a real run's "resume if it exists" would then load), and the folders it made are
removed when nothing else is left in them; a folder that existed before is never removed. Each
change is noted in the stand-in log with the script's line, so the report lists it.

Not guarded: ccprof's own writes (its code asked, ``dryrun._from_ccprof``, or the path is in a
temporary folder ccprof made, ``<tmp>/ccprof-*``: the run's profile and progress files, these
copies); caches, which hold what was downloaded or compiled rather than values of the run
(``~/.cache`` or ``$XDG_CACHE_HOME``, ``$HF_HOME``, ``$TORCH_HOME``, triton's and inductor's
caches); processes the script forks (the guard is this process's); writes by native code that opens
the file itself rather than through Python (a C++ library's ``fopen``). Each change is written to a
journal beside the copies before it happens (``_dry_journal``), so where the process is killed
outright (SIGKILL, a crash in native code) the runner undoes it after the process ended. A copy of
a multi-GB checkpoint costs its size on the temporary folder's disk and the time to copy it; no
file is read into memory.
"""
from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from ccprof.profiler._dry_journal import BACKUPS_ENV, DEFER_ENV, JOURNAL, undo_all
from ccprof.profiler.dryrun import DryRunUnsupported, _from_ccprof, user_line
from ccprof.profiler.dryrun_weights import _script_line

__all__ = ["guard_files", "BackupFailed"]

# the audit events that change a path (CPython 3.11's names and arguments)
_EVENTS = frozenset({"open", "os.truncate", "os.utime", "os.remove", "os.rename", "os.link", "os.symlink",
                     "os.mkdir", "os.rmdir", "shutil.rmtree"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_BACKUP_PREFIX = "ccprof-dry-backup-"

_active: "_Guard | None" = None      # the guard of the dry run now on in this process, if any
_installed = False                   # audit hooks cannot be removed: one per process, idle outside


class BackupFailed(DryRunUnsupported):
    """The dry run could not keep a copy of a file before the script changed it: the change was
    refused and the file is as it was."""


def _hook(event: str, args: tuple) -> None:
    guard = _active
    if guard is None or event not in _EVENTS:
        return
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int) or not ((flags or 0) & _WRITE_FLAGS or (isinstance(mode, str) and any(
                c in mode for c in "wax+"))):
            return
    guard.on_event(event, args)


def _fd_path(fd: int) -> str | None:
    """The path an open descriptor names (Linux's /proc), or None."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _resolve(path: Any, dir_fd: Any = None) -> str | None:
    """The absolute path an event names: a descriptor's file, a name relative to ``dir_fd``."""
    if isinstance(path, int):
        return _fd_path(path)
    path = os.fsdecode(path)
    if dir_fd not in (None, -1) and not os.path.isabs(path):
        base = _fd_path(dir_fd)
        if base is None:
            return None
        path = os.path.join(base, path)
    # the folder resolved, not the last name: a symbolic link removed or renamed is the link itself
    path = os.path.abspath(path)
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def _caches() -> tuple[str, ...]:
    """Folders of downloads and compiled code (not the run's values): left alone."""
    home = os.path.expanduser("~")
    found = [os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"), os.path.join(home, ".triton"),
             os.path.join(tempfile.gettempdir(), f"torchinductor_{_user()}")]
    found += [os.environ[k] for k in ("HF_HOME", "HF_DATASETS_CACHE", "TORCH_HOME", "TRITON_CACHE_DIR",
                                      "TORCHINDUCTOR_CACHE_DIR") if os.environ.get(k)]
    return tuple(os.path.join(os.path.realpath(p), "") for p in found)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:       # no user name (a container's uid without a passwd entry)
        return "unknown"


class _Guard:
    """The changes one dry run made to paths, and how to undo each (``actions``, in order)."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.local = threading.local()      # .busy: this thread is handling an event (its own copies)
        self.seen: set[str] = set()         # paths already handled: the first touch decides
        self.made: set[str] = set()         # paths the dry run made
        self.trees: list[str] = []          # folders shutil.rmtree removed (its own removals follow)
        self.actions: list[tuple] = []
        self.folder: str | None = None      # the copies and the journal, made at the first change
        self.journal: Any = None
        self.ours = (os.path.join(os.path.realpath(tempfile.gettempdir()), "ccprof-"),) + _caches()

    # -- watching -------------------------------------------------------------------------------

    def on_event(self, event: str, args: tuple) -> None:
        if getattr(self.local, "busy", False) or os.getpid() != self.pid:
            return
        self.local.busy = True
        try:
            with self.lock:
                if self.actions is not None:
                    self._handle(event, args)
        finally:
            self.local.busy = False

    def _handle(self, event: str, args: tuple) -> None:
        if event == "open":
            self._write(args[0], f"opened for writing ({args[1]!r})" if isinstance(args[1], str) else
                        "opened for writing")
        elif event == "os.truncate":
            self._write(args[0], "truncated")
        elif event == "os.utime":
            self._write(args[0], "had its times changed", args[3])
        elif event == "os.remove":
            self._remove(args[0], args[1])
        elif event == "os.rename":
            self._rename(args[0], args[1], args[2], args[3])
        elif event == "os.link":
            self._made(args[1], args[3])
        elif event == "os.symlink":
            self._made(args[1], args[2])
        elif event == "os.mkdir":
            self._mkdir(args[0], args[2])
        elif event == "os.rmdir":
            self._rmdir(args[0], args[1])
        elif event == "shutil.rmtree":
            self._rmtree(args[0], args[1])

    def _first(self, path: str | None, given: Any) -> str | None:
        """``path`` when this is its first touch and it is the script's to guard, else None."""
        if path is None:
            if _from_ccprof():
                return None
            raise BackupFailed(f"--dry-run cannot tell which file {given!r} names (a path relative to a folder's "
                               "descriptor), so it cannot keep a copy before the script changes it: the change "
                               "was refused")
        if path in self.seen or self._ours(path):
            return None
        self.seen.add(path)
        return path

    def _ours(self, path: str) -> bool:
        """ccprof's own file (a temporary folder it made, or its code asked) or a cache's."""
        return os.path.join(os.path.realpath(path), "").startswith(self.ours) or _from_ccprof()

    def _write(self, given: Any, how: str, dir_fd: Any = None) -> None:
        resolved = _resolve(given, dir_fd)
        # what is written through a symbolic link is its target
        path = self._first(os.path.realpath(resolved) if resolved is not None else None, given)
        if path is None:
            return
        if os.path.isfile(path):
            self._keep(path, f"{_shown(given)} {how}: a copy was kept and is put back after the dry run")
        elif not os.path.lexists(path):
            self._make(path, f"{_shown(given)} made by the dry run: removed after it (its contents come from "
                             "stand-ins)")

    def _remove(self, given: Any, dir_fd: Any, how: str = "removed") -> None:
        path = _resolve(given, dir_fd)
        if path is None and self.trees or path is not None and self._in_tree(path):
            return          # shutil.rmtree's own removals, under a folder copied whole
        path = self._first(path, given)
        if path is None:
            return
        if os.path.islink(path):
            self._record(("relink", path, os.readlink(path)))
            self._note(f"{_shown(given)} (a symbolic link) {how}: made again after the dry run")
        elif os.path.isfile(path):
            self._keep(path, f"{_shown(given)} {how}: a copy was kept and is put back after the dry run", True)

    def _rename(self, src_given: Any, dst_given: Any, src_fd: Any, dst_fd: Any) -> None:
        src, dst = _resolve(src_given, src_fd), _resolve(dst_given, dst_fd)
        if src is not None and dst is not None and os.path.isdir(src) and not os.path.islink(src):
            if not self._in_made(src) and self._ours(src):
                return
            if os.path.isdir(dst) and not self._in_made(dst):     # the empty folder it replaces comes back too
                self._record(("mkdir", dst, os.stat(dst).st_mode & 0o7777))
            if self._in_made(src):
                if dst not in self.made:        # a folder the dry run made, under a new name
                    self._record(("rmtree", dst))
                    self.made.add(dst)
                return
            self._record(("unmove", src, dst))
            self._note(f"{_shown(src_given)} (a folder) moved to {_shown(dst_given)}: moved back after the dry run")
            return
        # a file: the source goes away (kept if it was the user's), the destination is replaced
        self._remove(src_given, src_fd, f"moved to {_shown(dst_given)}")
        path = self._first(dst, dst_given)
        if path is None:
            return
        if os.path.isfile(path):
            self._keep(path, f"{_shown(dst_given)} replaced by {_shown(src_given)}: a copy was kept and is put "
                             "back after the dry run", True)
        elif not os.path.lexists(path):
            self._make(path, f"{_shown(dst_given)} made by the dry run (from {_shown(src_given)}): removed after it")

    def _made(self, given: Any, dir_fd: Any) -> None:
        path = self._first(_resolve(given, dir_fd), given)
        if path is not None and not os.path.lexists(path):
            self._make(path, f"{_shown(given)} made by the dry run: removed after it")

    def _mkdir(self, given: Any, dir_fd: Any) -> None:
        path = _resolve(given, dir_fd)
        if path is not None and not os.path.lexists(path) and self._first(path, given) is not None:
            self._record(("rmdir", path))        # only when nothing else is left in it
            self.made.add(path)

    def _rmdir(self, given: Any, dir_fd: Any) -> None:
        path = _resolve(given, dir_fd)
        if path is None and self.trees or path is not None and (self._in_tree(path) or path in self.made):
            return
        path = self._first(path, given)
        if path is not None and os.path.isdir(path):
            self._record(("mkdir", path, os.stat(path).st_mode & 0o7777))
            self._note(f"{_shown(given)} (an empty folder) removed: made again after the dry run")

    def _rmtree(self, given: Any, dir_fd: Any) -> None:
        path = _resolve(given, dir_fd)
        if path is None or not os.path.isdir(path) or os.path.islink(path):
            return
        self.trees.append(path)
        if self._in_made(path):
            return
        if self._ours(path):
            self.trees.pop()
            return
        backup = self._backup_path(path)
        try:
            shutil.copytree(path, backup, symlinks=True)
        except (OSError, shutil.Error) as exc:
            shutil.rmtree(backup, ignore_errors=True)
            self.trees.pop()
            raise self._failed(given, exc) from None
        self._record(("copytree", path, backup))
        self._note(f"{_shown(given)} (a folder) removed: a copy was kept and is put back after the dry run")

    def _in_tree(self, path: str) -> bool:
        return any(path.startswith(os.path.join(t, "")) or path == t for t in self.trees)

    def _in_made(self, path: str) -> bool:
        return path in self.made or any(path.startswith(os.path.join(m, "")) for m in self.made)

    def _keep(self, path: str, note: str, unlinked: bool = False) -> None:
        """Copy ``path`` before it changes; a file about to be ``unlinked`` (removed, replaced) keeps
        its bytes, so a hard link holds them where the copies' folder is on the same file system."""
        backup = self._backup_path(path)
        try:
            if not (unlinked and _linked(path, backup)):
                shutil.copy2(path, backup)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.remove(backup)
            self.seen.discard(path)
            raise self._failed(path, exc) from None
        self._record(("restore", path, backup))
        self._note(note)

    def _make(self, path: str, note: str) -> None:
        self._record(("remove", path))
        self.made.add(path)
        self._note(note)

    def _backup_path(self, path: str) -> str:
        self._open_folder(path)
        return os.path.join(self.folder, f"{len(self.actions):05d}-{os.path.basename(path) or 'folder'}")

    def _open_folder(self, path: str) -> None:
        """The folder of copies and its journal, made at the first change; its path goes where the
        runner looks after the process ends (``CCPROF_DRY_BACKUPS``), so a killed run is undone too."""
        if self.folder is not None:
            return
        try:
            self.folder = tempfile.mkdtemp(prefix=_BACKUP_PREFIX)
            self.journal = open(os.path.join(self.folder, JOURNAL), "a", encoding="utf-8")
            listed = os.environ.get(BACKUPS_ENV)
            if listed:
                with open(listed, "a", encoding="utf-8") as f:
                    f.write(self.folder + "\n")
        except OSError as exc:
            self.seen.discard(path)
            raise self._failed(path, exc) from None

    def _record(self, action: tuple) -> None:
        """One change to undo, written to the journal before the change happens."""
        self._open_folder(action[1])
        try:
            # when: the journals of dry runs that ran at once are undone in one order (_dry_journal)
            self.journal.write(json.dumps([*action, {"t": time.monotonic_ns()}]) + "\n")
            self.journal.flush()
        except OSError as exc:
            self.seen.discard(action[1])
            raise self._failed(action[1], exc) from None
        self.actions.append(action)

    def _failed(self, given: Any, exc: BaseException) -> BackupFailed:
        where = _script_line()
        at = f" at {where[0]}:{where[1]}" if where else ""
        folder = self.folder or tempfile.gettempdir()
        return BackupFailed(
            f"--dry-run keeps a copy of each file the script changes and could not copy {_shown(given)} into "
            f"{folder} ({getattr(exc, 'strerror', None) or exc}): the script's change{at} was refused and the file "
            "is unchanged. Free space there, or set TMPDIR to a folder with room for it, and run again")

    def _note(self, what: str) -> None:
        self.log.note(what, None, where=_script_line() or user_line() or ("<unknown>", 0, ""))

    # -- undoing --------------------------------------------------------------------------------

    def undo(self) -> None:
        """Put every change back, last first; what cannot be is said on stderr with where its copy is."""
        with self.lock:
            actions, self.actions = self.actions, None
        if self.journal is not None:
            self.journal.close()
        if actions and self.folder is not None and os.environ.get(DEFER_ENV) and os.environ.get(BACKUPS_ENV):
            return      # one of dry runs that ran at once: the process that started them undoes (undo_left)
        if actions:
            undo_all(actions, self.folder)
        elif self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _linked(path: str, backup: str) -> bool:
    """A hard link ``backup`` to ``path``; False where it cannot be (another file system)."""
    try:
        os.link(path, backup)
        return True
    except OSError:
        return False


def _shown(given: Any) -> str:
    return os.fsdecode(given) if isinstance(given, (str, bytes, os.PathLike)) else f"file descriptor {given}"


@contextlib.contextmanager
def guard_files(log: Any) -> Iterator[None]:
    """While it lasts, every file or folder the script changes is kept or remembered, and on
    leaving (however it leaves, ``os._exit`` included) put back as it was; ``log`` (a
    ``dryrun.StandInLog``) gets a note per path with the script's line.

    Example:
        >>> with dry_run():                       # dry_run() enters guard_files itself
        ...     open("train.log", "w").write("loss 1.0")
        >>> open("train.log").read()              # what it held before
        'epoch 3 loss 2.31'
    """
    global _active, _installed
    from ccprof.profiler.dryrun import Patches
    from ccprof.profiler.pycount import SKIPPED_WITH_CALLEES
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True
    guard, outer = _Guard(log), _active
    real_exit = os._exit

    def exit_after_undo(code: int) -> None:
        if os.getpid() == guard.pid:        # not in a process the script forked
            guard.undo()
        real_exit(code)

    patches = Patches()
    patches.set(os, "_exit", exit_after_undo)
    # the copies' Python (shutil's) is the dry run's, not the script's host work (pycount)
    SKIPPED_WITH_CALLEES.add(_Guard.on_event.__code__)
    _active = guard
    try:
        yield
    finally:
        _active = outer
        if outer is None:
            SKIPPED_WITH_CALLEES.discard(_Guard.on_event.__code__)
        patches.undo()
        guard.undo()
