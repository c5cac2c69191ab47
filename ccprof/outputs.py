"""Where ccprof writes: never over an input, never over a file it did not write, run history.

The one output-safety policy; every command that writes a file a user named (``advise -o``,
``report -o``, ``compare -o``, ``apply -o``/``--in-place``) goes through ``check_output`` then
``write_output``. Nothing a user wrote is lost or overwritten without a backup (issue 13):

- an output path that is one of the command's inputs is refused (``report p.json -o p.json``
  would replace the profile with HTML), unless the command rewrites that input on purpose
  (``apply --in-place``), and then a backup is always kept first;
- an existing file ccprof did not write (no ``<meta name="generator" content="ccprof ...">``
  in HTML, no ``"schema": "ccprof.*"`` in JSON) is only replaced with ``--force``, and then a
  backup ``NAME.bak`` (``.bak.1``... never overwritten) is kept first;
- ``ccprof analyze`` into a folder that holds an earlier run moves that run's artefacts into
  ``<out>/runs/<UTC time the run finished>/`` before writing the new ones, so the "before" of
  ``ccprof compare`` survives; ``compare`` with no arguments compares the folder's last two runs.

Layout of an ``--out`` folder after three runs::

    ccprof-report/
        profile.json advice.json report.html          # the latest run
        runs/20261202T101500Z/profile.json ...        # the one before
        runs/20261202T093000Z/profile.json ...        # the first
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from typing import Callable

from ccprof.exit_codes import CcprofError

__all__ = ["OutputError", "RUN_FILES", "backup_path", "written_by_ccprof", "check_output", "keep_backup",
           "write_output", "check_out_dir", "archive_previous_run", "run_history", "last_two_runs"]

# what one analyze run leaves in its --out folder (and moves into runs/ when the next one comes)
RUN_FILES = ("profile.json", "advice.json", "report.html", "ccprof-error.log")


class OutputError(CcprofError):
    """A write ccprof refuses to make; the message names the path and what to do instead."""


def backup_path(path: str | Path) -> Path:
    """``x.html.bak``, or ``.bak.1``, ``.bak.2``... when taken: a backup is never overwritten."""
    p = Path(path)
    candidate = p.with_name(p.name + ".bak")
    n = 0
    while candidate.exists():
        n += 1
        candidate = p.with_name(f"{p.name}.bak.{n}")
    return candidate


def written_by_ccprof(path: str | Path) -> bool:
    """True when ``path`` is an artefact ccprof wrote: its HTML (the generator meta tag in the
    first 4 KiB), its JSON (a ``schema`` of ``ccprof.*``, the export's trace included), a table
    ``ccprof export`` wrote (its columns), or a script ``ccprof apply`` wrote
    (the ``_ccprof`` suffix it gives by default is not proof, so scripts are never counted)."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    if b'<meta name="generator" content="ccprof' in head:
        return True
    if p.suffix in (".csv", ".parquet"):
        return _export_table(p, head)
    if p.suffix == ".json" and head.lstrip().startswith(b"{"):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (ValueError, OSError, RecursionError):
            return False
        return isinstance(data, dict) and str(data.get("schema", "")).startswith("ccprof.")
    return False


def _export_table(p: Path, head: bytes) -> bool:
    """A table ``ccprof export`` wrote: a CSV whose header is one of its tables' columns, or a
    Parquet file with those columns (read when pyarrow is here)."""
    from ccprof.artefacts.frames import MODULES_COLUMNS, OPS_COLUMNS  # here: only a table output asks

    tables = (list(OPS_COLUMNS), list(MODULES_COLUMNS))
    if p.suffix == ".csv":
        return head.split(b"\n", 1)[0].decode("utf-8", "replace").strip().split(",") in tables
    try:
        import pyarrow.parquet as pq  # here: optional (Parquet export)

        return pq.read_schema(p).names in tables
    except Exception:             # no pyarrow, or not a Parquet file: not known to be ccprof's
        return False


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(out: str | Path, inputs: list[str | Path], *, force: bool, option: str = "-o",
                 in_place: bool = False, make_parents: bool = True) -> Path | None:
    """Refuse to write ``out`` over an input, or over someone else's file without ``force``.

    ``in_place``: ``out`` is the input the command rewrites on purpose (``apply --in-place``):
    always backed up. ``make_parents=False``: a missing folder is refused rather than created.
    Returns the backup to make before writing (``in_place``, or ``force`` over a file ccprof did
    not write), or None. Raises OutputError naming the option and the path. Writes nothing
    itself: ``write_output`` makes the backup and the write.

    Example: ``check_output("report.html", ["profile.json"], force=False)`` -> None.
    """
    p = Path(out)
    for src in inputs:
        if src is not None and (_same(p, Path(src)) or p.resolve() == Path(src).resolve()):
            raise OutputError(f"{option} {out}: that is an input of this command; write elsewhere "
                              f"(it would replace {src})")
    if p.is_dir():
        raise OutputError(f"{option} {out}: is a folder; give a file name")
    folder = p.parent if str(p.parent) else Path(".")
    if not make_parents and not folder.is_dir():
        raise OutputError(f"{option} {out}: the folder {folder} does not exist")
    if (p.exists() and not os.access(p, os.W_OK)) or (folder.is_dir() and not os.access(folder, os.W_OK)):
        raise OutputError(f"{option} {out}: not writable; nothing written")
    if in_place:
        return backup_path(p)
    if not p.exists() or written_by_ccprof(p):
        return None
    if not force:
        raise OutputError(f"{option} {out}: the file exists and ccprof did not write it; pass --force "
                          "to replace it (a backup is kept) or write elsewhere")
    return backup_path(p)


def write_output(out: str | Path, content: str | Callable[[Path], None], backup: Path | None, *,
                 option: str = "-o") -> Path | None:
    """Copy ``out`` to ``backup`` (from ``check_output``), then write ``content`` (text, or a
    function that writes the file, e.g. one keeping a script's encoding). Returns the backup
    made, or None. Raises OutputError saying what was kept when the write fails."""
    p = Path(out)
    made = None
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        made = keep_backup(p, backup)
        if callable(content):
            content(p)
        else:
            p.write_text(content, encoding="utf-8")
    except OSError as exc:
        kept = f"; the original is unchanged, backup in {made}" if made else "; nothing written"
        raise OutputError(f"{option} {out}: cannot write it ({exc.strerror or exc}){kept}") from None
    return made


def keep_backup(path: str | Path, backup: Path | None) -> Path | None:
    """Copy ``path`` to ``backup`` (from ``check_output``) before it is replaced."""
    if backup is None or not Path(path).exists():
        return None
    shutil.copy2(path, backup)
    return backup


def check_out_dir(out_dir: str | Path, option: str = "--out") -> Path:
    """Fail before the script runs when ``out_dir`` cannot hold the artefacts: a file in the
    way, a parent that is a file, or no permission to write. Creates the folder."""
    p = Path(out_dir)
    for parent in [p, *p.parents]:
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{option} {out_dir}: {parent} is a file, not a folder")
        if parent.exists():
            break
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{option} {out_dir}: cannot create it ({exc.strerror})") from None
    for name in RUN_FILES[:3]:
        if (p / name).exists() and not written_by_ccprof(p / name):
            raise OutputError(f"{option} {out_dir}: holds a {name} that ccprof did not write; "
                              "give another --out folder")
    probe = p / f".ccprof-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{option} {out_dir}: cannot write there ({exc.strerror})") from None
    return p


def _stamp(profile_json: Path) -> str:
    """The earlier run's finish time as ``20261202T101500Z`` (from its profile, else the file time)."""
    when = None
    try:
        env = json.loads(profile_json.read_text(encoding="utf-8")).get("environment") or {}
        text = env.get("finished_at") or env.get("started_at")
        if isinstance(text, str):
            when = _dt.datetime.fromisoformat(text)
    except (ValueError, OSError, AttributeError, RecursionError):
        when = None
    if when is None:
        when = _dt.datetime.fromtimestamp(profile_json.stat().st_mtime, _dt.timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.astimezone(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def archive_previous_run(out_dir: str | Path) -> Path | None:
    """Move the run in ``out_dir`` (its RUN_FILES) into ``out_dir/runs/<stamp>/``; return that
    folder, or None when the folder holds no earlier run."""
    out = Path(out_dir)
    prof = out / "profile.json"
    if not prof.is_file() or not written_by_ccprof(prof):
        return None
    base = out / "runs" / _stamp(prof)
    dest, n = base, 1
    while dest.exists():
        n += 1
        dest = base.with_name(f"{base.name}-{n}")
    dest.mkdir(parents=True)
    for name in RUN_FILES:
        # only what ccprof wrote moves (check_out_dir refused an --out holding someone else's)
        if (out / name).is_file() and (name == "ccprof-error.log" or written_by_ccprof(out / name)):
            os.replace(out / name, dest / name)
    return dest


def run_history(out_dir: str | Path) -> list[Path]:
    """Every run's profile.json in ``out_dir``, oldest first (runs/ by time, then the latest)."""
    out = Path(out_dir)
    def order(p: Path) -> tuple[str, int]:        # 20261202T101500Z-10 after -9
        stamp, _, n = p.parent.name.partition("-")
        return stamp, int(n) if n.isdigit() else 0

    runs = sorted((d / "profile.json" for d in (out / "runs").glob("*") if (d / "profile.json").is_file()),
                  key=order)
    if (out / "profile.json").is_file():
        runs.append(out / "profile.json")
    return runs


def last_two_runs(out_dir: str | Path) -> tuple[Path, Path]:
    """(before, after): the two newest runs of ``out_dir``; OutputError when it holds fewer."""
    runs = run_history(out_dir)
    if len(runs) < 2:
        found = f"only {runs[0]}" if runs else "no profile.json"
        raise OutputError(f"{out_dir}: needs two runs to compare and holds {found}; run "
                          f"`ccprof analyze` into it again, or name two profiles")
    return runs[-2], runs[-1]
