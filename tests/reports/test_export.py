"""Exports (issue 23 item 3): the per-op and per-module DataFrames with projected seconds, their
CSV/Parquet files, and the projected GPU step as a Chrome trace-event JSON."""
from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest
from click.testing import CliRunner

from ccprof import api
from ccprof.artefacts.frames import MODULES_COLUMNS, OPS_COLUMNS
from ccprof.artefacts.profile import Profile
from ccprof.cli import cli
from ccprof.exit_codes import CcprofError, ExitCode
from ccprof.reports import export
from ccprof.reports.export import step_trace, trace_device_us
from tests.helpers.paths import FIXTURES
from tests.helpers.profiles import gpt_plain, priced


@pytest.fixture(scope="module")
def profile() -> Profile:
    return priced(gpt_plain())


@pytest.fixture()
def saved(profile, tmp_path):
    path = tmp_path / "profile.json"
    profile.to_json(path)
    return path


def _device_s(p: Profile) -> float:
    """The step's modelled device time on the target GPU: what the per-op seconds sum to."""
    return sum(p.projection[p.cost.gpu].detail["device_s"].values())


def test_ops_frame_has_one_row_per_op_row_and_sums_to_the_kernel_time(profile):
    f = profile.ops_frame()
    assert tuple(f.columns) == OPS_COLUMNS and f.attrs["gpu"] == profile.cost.gpu == "a100-80gb"
    assert len(f) == len(profile.ops)
    assert list(f.op) == [o.op for o in profile.ops] and list(f.calls) == [o.count for o in profile.ops]
    assert list(f.phase) == [o.phase for o in profile.ops] and list(f.flops) == [o.flops for o in profile.ops]
    assert [json.loads(s) for s in f.shapes] == [o.shapes for o in profile.ops]
    # the owner holding most calls, and every owner
    assert [json.loads(m) for m in f.modules] == [o.modules for o in profile.ops]
    assert all(m == (max(o.modules, key=o.modules.get) if o.modules else "") for m, o in zip(f.module, profile.ops))
    assert f.projected_s.sum() == pytest.approx(_device_s(profile), rel=1e-6)
    by_phase = f.groupby("phase").projected_s.sum().to_dict()
    device = profile.projection["a100-80gb"].detail["device_s"]
    assert by_phase == pytest.approx({ph: device[ph] for ph in by_phase}, rel=1e-6)
    assert (f.projected_s >= 0).all() and (f.projected_s[f.op.str.contains("mm")] > 0).all()


def test_modules_frame_carries_the_modules_projected_seconds(profile):
    f = profile.modules_frame()
    assert tuple(f.columns) == MODULES_COLUMNS and list(f.name) == [m.name for m in profile.model.modules]
    proj = profile.projection[profile.cost.gpu]
    assert list(f.module_s) == [proj.module_s.get(m.name, 0.0) for m in profile.model.modules]
    row = f.set_index("name").loc["blocks.0"]
    assert row["class"] == "Block" and row.params == 49984
    # a module's seconds are the op rows' seconds its subtree owns (calls x seconds per call)
    ops = profile.ops_frame()
    owned = sum(s * sum(c for n, c in json.loads(m).items() if n == "blocks.0" or n.startswith("blocks.0."))
                / max(calls, 1) for s, m, calls in zip(ops.projected_s, ops.modules, ops.calls))
    assert row.module_s == pytest.approx(owned, rel=1e-9)


def test_frames_say_how_to_cost_what_the_profile_does_not_hold(profile):
    with pytest.raises(ValueError, match=r"not costed on a GPU: ccprof.hardware.attach"):
        Profile().ops_frame()
    with pytest.raises(ValueError, match=r"no per-op seconds for 'h100-sxm'.*attach\(profile, gpu='h100-sxm'\)"):
        profile.ops_frame("h100-sxm")      # kept for the target GPU only
    older = Profile.from_json(FIXTURES / "profile_sample.json")     # from before per-op seconds
    with pytest.raises(ValueError, match="no per-op seconds for 'a100-80gb'"):
        older.ops_frame()


def test_csv_round_trip(profile, saved, tmp_path):
    written = api.export_profile(saved, csv_dir=tmp_path / "out")
    assert [p.name for p, _ in written] == ["ops.csv", "modules.csv"] and all(b is None for _, b in written)
    ops = pd.read_csv(tmp_path / "out" / "ops.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(ops, profile.ops_frame(), check_dtype=False)
    mods = pd.read_csv(tmp_path / "out" / "modules.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(mods, profile.modules_frame(), check_dtype=False)
    # a second export replaces its own files; a file ccprof did not write needs --force
    api.export_profile(saved, csv_dir=tmp_path / "out")
    (tmp_path / "out" / "ops.csv").write_text("a,b\n1,2\n")
    with pytest.raises(CcprofError, match="did not write it; pass --force"):
        api.export_profile(saved, csv_dir=tmp_path / "out")
    assert (tmp_path / "out" / "ops.csv").read_text() == "a,b\n1,2\n"
    (_, backup), _ = api.export_profile(saved, csv_dir=tmp_path / "out", force=True)
    assert backup is not None and backup.read_text() == "a,b\n1,2\n"


def test_an_older_profile_is_costed_again_for_the_export(tmp_path):
    """The saved sample predates per-op seconds and module owners: costed again on its GPU, modules unknown."""
    api.export_profile(FIXTURES / "profile_sample.json", csv_dir=tmp_path, gpu="h100-sxm")
    ops = pd.read_csv(tmp_path / "ops.csv", keep_default_na=False)
    again = api.with_op_seconds(Profile.from_json(FIXTURES / "profile_sample.json"), gpu="h100-sxm")[0]
    assert list(ops.op) == ["aten.mm", "aten.bmm"]
    assert ops.projected_s.sum() == pytest.approx(sum(again.projection["h100-sxm"].detail["device_s"].values()))
    assert pd.read_csv(tmp_path / "modules.csv").module_s.isna().all()       # no owners recorded


def test_parquet_without_an_engine_names_the_install_command(saved, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "parquet_engine", lambda: None)
    with pytest.raises(CcprofError) as err:
        api.export_profile(saved, parquet_dir=tmp_path / "pq")
    assert err.value.exit_code == ExitCode.BAD_INPUT
    assert str(err.value) == "--parquet needs pyarrow or fastparquet, which is not installed: pip install pyarrow"
    assert not (tmp_path / "pq").exists()


def test_parquet_round_trip(profile, saved, tmp_path):
    if export.parquet_engine() is None:
        pytest.skip("neither pyarrow nor fastparquet is installed")
    api.export_profile(saved, parquet_dir=tmp_path)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ops.parquet"), profile.ops_frame(), check_dtype=False)


def test_trace_is_trace_event_json_whose_kernels_sum_to_the_projected_kernel_time(profile, saved, tmp_path):
    api.export_profile(saved, trace_path=tmp_path / "step.json")
    trace = json.loads((tmp_path / "step.json").read_text())
    assert trace == json.loads(json.dumps(step_trace(profile)))
    events = trace["traceEvents"]
    assert all({"name", "ph", "pid", "tid"} <= e.keys() for e in events)
    complete = [e for e in events if e["ph"] == "X"]
    assert all(isinstance(e["ts"], float) and e["dur"] >= 0 and e["ts"] >= export.START_US for e in complete)
    assert min(e["ts"] for e in complete) == export.START_US      # not 0: DevTools' viewer leaves ts 0 out
    names = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert names == {"phases", "GPU kernels", "host"}
    tid = {e["args"]["name"]: e["tid"] for e in events if e["name"] == "thread_name"}
    # the kernels are the op rows' projected seconds, in microseconds
    assert trace_device_us(trace) == pytest.approx(_device_s(profile) * 1e6, rel=1e-6)
    kernels = [e for e in complete if e["tid"] == tid["GPU kernels"]]
    assert len(kernels) == sum(1 for s in profile.projection["a100-80gb"].op_s if s > 0)
    # phases in the step's order, back to back, each as long as the projection's phase
    phases = [e for e in complete if e["tid"] == tid["phases"]]
    proj = profile.projection["a100-80gb"]
    assert [e["name"] for e in phases] == [ph for ph in ("data", "forward", "backward", "optimizer", "other")
                                          if proj.phase_s.get(ph, 0) > 0]
    assert [e["dur"] for e in phases] == pytest.approx([proj.phase_s[e["name"]] * 1e6 for e in phases])
    assert all(a["ts"] + a["dur"] == pytest.approx(b["ts"]) for a, b in zip(phases, phases[1:]))
    assert sum(e["dur"] for e in phases) == pytest.approx(proj.step_s * 1e6)
    # each kernel inside its phase's window, in the step's order: forward, backward, optimizer
    window = {e["name"]: (e["ts"], e["ts"] + e["dur"]) for e in phases}
    assert all(window[k["cat"]][0] - 1e-6 <= k["ts"] and k["ts"] + k["dur"] <= window[k["cat"]][1] + 1e-6
               for k in kernels)
    assert [k["cat"] for k in kernels] == sorted((k["cat"] for k in kernels),
                                                 key=["forward", "backward", "optimizer", "other"].index)
    # no two events of a track overlap by a rounding error (a viewer drops or nests such events)
    for track in tid.values():
        on = sorted((e for e in complete if e["tid"] == track), key=lambda e: e["ts"])
        assert all(a["ts"] + a["dur"] <= b["ts"] for a, b in zip(on, on[1:])), track
    # the host track: the host time the projection prices in each phase
    host = {e["name"]: e["dur"] for e in complete if e["tid"] == tid["host"]}
    assert host == pytest.approx({f"host: {ph}": s * 1e6 for ph, s in proj.detail["host_s"].items() if s > 0})
    assert trace["otherData"]["gpu"] == "a100-80gb" and trace["schema"] == "ccprof.trace/1"


def test_a_phase_shorter_than_its_kernels_is_stretched_to_hold_them(profile):
    """A measured GPU's recalibration can make a phase shorter than the modelled kernels in it."""
    proj = profile.projection["a100-80gb"]
    short = dataclasses.replace(proj, phase_s={**proj.phase_s, "backward": proj.detail["device_s"]["backward"] / 2})
    p = dataclasses.replace(profile, projection={**profile.projection, "a100-80gb": short})
    trace = step_trace(p)
    back = next(e for e in trace["traceEvents"] if e["name"] == "backward" and e["ph"] == "X")
    assert back["dur"] == pytest.approx(max(proj.detail["device_s"]["backward"], proj.detail["host_s"]["backward"]) * 1e6)
    assert trace_device_us(trace) == pytest.approx(_device_s(profile) * 1e6, rel=1e-6)


def test_cli_export(saved, tmp_path):
    runner = CliRunner()
    help_text = runner.invoke(cli, ["export", "--help"]).output
    assert "--csv DIR" in help_text and "--trace FILE" in help_text and "ui.perfetto.dev" in help_text
    got = runner.invoke(cli, ["export", str(saved), "--csv", str(tmp_path / "t"), "--trace", str(tmp_path / "s.json")])
    assert got.exit_code == 0, got.output
    assert got.output.split() == [str(tmp_path / "t" / "ops.csv"), str(tmp_path / "t" / "modules.csv"),
                                  str(tmp_path / "s.json")]
    nothing = runner.invoke(cli, ["export", str(saved)])
    assert nothing.exit_code == ExitCode.BAD_INPUT and "nothing to export" in nothing.output
    assert not math.isnan(pd.read_csv(tmp_path / "t" / "modules.csv").module_s.sum())
