"""A dry run leaves the user's files as they were, end to end: `ccprof analyze --dry-run` on a
script that truncates its checkpoint with open(path, "wb"), appends to its log and makes a metrics
file; and a dry run that ends with os._exit (as the harness ends a script that swallows its stop)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from tests.helpers.paths import ROOT

SCRIPT = ROOT / "tests" / "scripts" / "dry_writes_files.py"


def _line(text: str) -> int:
    return next(i for i, line in enumerate(SCRIPT.read_text().splitlines(), 1) if text in line)


def test_analyze_dry_run_leaves_the_scripts_checkpoint_and_log_as_they_were(tmp_path):
    trained = torch.nn.Linear(4, 2)
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    (tmp_path / "train.log").write_text("epoch 3 loss 2.31\n")
    before = {name: ((tmp_path / name).read_bytes(), os.stat(tmp_path / name).st_mtime_ns)
              for name in ("model.pt", "train.log")}
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(SCRIPT), "--dry-run", "--steps", "2",
                           "--warmup", "1", "--out", str(out), "--gpu", "h100-sxm", "-q"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = {name: ((tmp_path / name).read_bytes(), os.stat(tmp_path / name).st_mtime_ns)
             for name in ("model.pt", "train.log")}
    assert after == before and not (tmp_path / "metrics.json").exists()
    assert torch.equal(torch.load(tmp_path / "model.pt")["weight"], trained.weight.detach())
    notes = {(s["line"], s["what"]) for s in json.loads((out / "profile.json").read_text())["dry_run"]["stand_ins"]}
    kept = "a copy was kept and is put back after the dry run"
    assert (_line('open(args.save, "wb")'), f"model.pt opened for writing ('w'): {kept}") in notes
    assert (_line('open(args.log, "a")'), f"train.log opened for writing ('a'): {kept}") in notes
    assert (_line('open("metrics.json", "w")'),
            "metrics.json made by the dry run: removed after it (its contents come from stand-ins)") in notes
    assert f"dry_writes_files.py:{_line('open(args.save')}" in (out / "report.html").read_text()


def test_a_dry_run_ended_by_os_exit_puts_the_files_back_first(tmp_path):
    (tmp_path / "ckpt.pt").write_bytes(b"OLD")
    code = ("import os\nfrom ccprof.profiler.dryrun import dry_run\n"
            "with dry_run():\n    open('ckpt.pt', 'wb').close()\n    open('made.txt', 'w').close()\n    os._exit(7)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 7, proc.stderr[-3000:]
    assert (tmp_path / "ckpt.pt").read_bytes() == b"OLD" and sorted(os.listdir(tmp_path)) == ["ckpt.pt"]


def test_a_dry_run_killed_outright_is_undone_by_the_runner_from_its_journal(tmp_path):
    from ccprof.profiler.runner import run_script
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"OLD")
    result = run_script(ROOT / "tests" / "scripts" / "dry_killed_after_write.py", [str(ckpt)], steps=2, warmup=1,
                        dry_run=True)
    assert result.profile is None and "signal 9" in result.message
    assert ckpt.read_bytes() == b"OLD" and os.listdir(tmp_path) == ["ckpt.pt"]
