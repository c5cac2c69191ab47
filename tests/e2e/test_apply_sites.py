"""The recording side and the rewrite side of 'where the knob is' together, on a small llm.c-like
script (tests/scripts/asserted_batch.py): the run records that its training loader's batch came
from `--batch_size` on the command line; the rewrite changes that default and that option, raises
the asserted total batch to the next multiple, and the rewrite then runs with the printed command."""
from __future__ import annotations

import subprocess
import sys

from ccprof.applier.codemods import apply_source
from ccprof.applier.codemods._sites import RunSites
from ccprof.profiler.runner import run_script
from tests.helpers.paths import SCRIPTS


def test_the_batch_goes_where_the_run_took_it_and_the_rewrite_runs(tmp_path):
    argv = ["--batch_size", "4", "--num_iterations", "20"]
    r = run_script(SCRIPTS / "asserted_batch.py", argv, steps=3, warmup=1, timeout_s=180)
    assert r.profile is not None and r.profile.error is None, r.profile and r.profile.error
    site = RunSites(r.profile.sites).training("dataloader")
    bs = RunSites.setting(site, "batch_size")
    assert (bs.kind, bs.path, bs.flag, bs.argv, bs.value) == ("argparse", "args.batch_size", "--batch_size",
                                                             "--batch_size 4", 4)
    source = (SCRIPTS / "asserted_batch.py").read_text(encoding="utf-8")
    result = apply_source(source, ["batch_size"], options={"batch_size": 16}, argv=argv, sites=r.profile.sites,
                          path=str(SCRIPTS / "asserted_batch.py"))
    assert result.applied == ["batch_size"], result.skipped
    # batch 4 -> 16: 16 x 16 tokens no longer divide the total 128: it goes to 256, each optimizer step sees 2x
    # the tokens, so 20 iterations / 2 = 10 (on the command line, where the run set them)
    assert result.command == ["--batch_size", "16", "--num_iterations", "10"]
    assert "default=256" in result.source
    out = tmp_path / "asserted_batch.py"
    out.write_text(result.source, encoding="utf-8")
    done = subprocess.run([sys.executable, str(out), *result.command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # the original with the same command line stops at its assert
    before = subprocess.run([sys.executable, str(SCRIPTS / "asserted_batch.py"), *result.command],
                            capture_output=True, text=True, timeout=120)
    assert before.returncode != 0 and "assert args.total_batch_size % tokens_per_fwdbwd == 0" in before.stderr
