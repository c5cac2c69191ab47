"""Saved profiles and advice are checked against their schema on load (issue 13).

A bad file fails in ``from_json`` with an ArtefactError (a ValueError) whose message starts
with the field's JSON path, and the CLI exits 2 naming the file and the field, with no
traceback. Every file ccprof itself writes still loads.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ccprof._serde import MAX_DEPTH, ArtefactError
from ccprof.artefacts.advice import AdviceSet
from ccprof.artefacts.profile import Profile
from tests.helpers.paths import FIXTURES

PROFILES = [FIXTURES / "profile_sample.json", FIXTURES / "profile_sparse.json",
            FIXTURES / "real_hf_trainer" / "profile.json"]
ADVICE = [FIXTURES / "advice_sample.json", FIXTURES / "advice_sparse.json",
          FIXTURES / "real_hf_trainer" / "advice.json"]


def sample(name: str = "profile_sample.json") -> dict:
    return json.loads((FIXTURES / name).read_text())


def profile_error(data) -> ArtefactError:
    text = data if isinstance(data, str) else json.dumps(data)
    with pytest.raises(ArtefactError) as info:
        Profile.from_json(text)
    assert isinstance(info.value, ValueError)       # what the CLI (and callers) catch
    return info.value


def advice_error(data) -> ArtefactError:
    with pytest.raises(ArtefactError) as info:
        AdviceSet.from_json(json.dumps(data))
    return info.value


# ---- every file ccprof writes loads ------------------------------------------------------------

@pytest.mark.parametrize("path", PROFILES + ADVICE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_files_load_and_round_trip(path):
    cls = Profile if path.name.startswith("profile") else AdviceSet
    obj = cls.from_json(path)
    assert cls.from_json(obj.to_json()) == obj


def test_fresh_profile_and_advice_round_trip(tmp_path):
    import torch

    from ccprof import advise, profile_model
    from ccprof.hardware import attach

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [(torch.randn(4, 8), torch.randint(0, 2, (4,))) for _ in range(3)]
    profile = attach(profile_model(model, opt, batches, torch.nn.functional.cross_entropy, steps=2, warmup=1),
                     gpu="l4", total_steps=1000)
    profile.to_json(tmp_path / "profile.json")
    again = Profile.from_json(tmp_path / "profile.json")
    assert again == profile
    advice = advise(again)
    advice.to_json(tmp_path / "advice.json")
    assert AdviceSet.from_json(tmp_path / "advice.json") == advice


def test_null_float_loads():
    # to_dict writes a NaN or inf float as null: a float field takes it back
    d = sample()
    d["steps"]["loss"] = [1.0, None, 0.5]
    d["cost"]["usd_per_hour"] = None
    p = Profile.from_json(json.dumps(d))
    assert p.steps.loss == [1.0, None, 0.5] and p.cost.usd_per_hour is None


def test_int_where_float_goes_and_float_where_int_goes():
    d = sample()
    d["steps"]["step_s"] = [1, 2, 3]
    d["memory"]["peak_bytes"] = 1.5e9
    p = Profile.from_json(json.dumps(d))
    assert p.steps.step_s == [1, 2, 3] and p.memory.peak_bytes == 1.5e9


# ---- bad profiles --------------------------------------------------------------------------

def test_steps_null():
    d = sample()
    d["steps"] = None
    assert str(profile_error(d)) == "steps: expected an object, got null"


def test_optional_section_null_is_fine():
    d = sample()
    d["optimizer"] = d["gpu"] = d["cost"] = d["projection"] = None
    p = Profile.from_json(json.dumps(d))
    assert p.optimizer is None and p.cost is None


def test_string_in_step_s():
    d = sample()
    d["steps"]["step_s"][2] = "abc"
    e = profile_error(d)
    assert str(e) == 'steps.step_s[2]: expected a number, got "abc"' and e.field == "steps.step_s[2]"


def test_bool_in_number_field():
    d = sample()
    d["memory"]["peak_bytes"] = True
    assert str(profile_error(d)) == "memory.peak_bytes: expected a number, got true"


def test_nan_text_rejected():
    text = json.dumps(sample()).replace('"warmup": ', '"warmup": NaN, "_was": ', 1)
    assert str(profile_error(text)) == "steps.warmup: expected a number, got NaN"


def test_infinity_rejected_in_list():
    d = sample()
    text = json.dumps(d).replace('"step_s": [', '"step_s": [Infinity, ', 1)
    assert str(profile_error(text)).startswith("steps.step_s[0]: expected a number, got Infinity")


def test_missing_required_field():
    d = sample()
    assert d["ops"], "the sample has op rows"
    del d["ops"][0]["op"]
    assert str(profile_error(d)) == "ops[0].op: required but missing"


def test_string_field_given_number():
    d = sample()
    d["device"]["name"] = 42
    assert str(profile_error(d)) == "device.name: expected a string, got 42"


def test_bool_field_given_string():
    d = sample()
    d["precision"]["autocast"] = "yes"
    assert str(profile_error(d)) == 'precision.autocast: expected true or false, got "yes"'


def test_dict_field_given_list():
    d = sample()
    d["counters"] = [1, 2]
    assert str(profile_error(d)) == "counters: expected an object, got a list"


def test_list_field_given_object():
    d = sample()
    d["ops"] = {"op": "aten::mm"}
    assert str(profile_error(d)) == "ops: expected a list, got an object"


def test_dict_value_named_by_key():
    d = sample()
    gpu = next(iter(d["projection"]))
    d["projection"][gpu]["step_s"] = "fast"
    assert str(profile_error(d)) == f'projection["{gpu}"].step_s: expected a number, got "fast"'
    d = sample()
    d["counters"]["forward_calls"] = "many"
    assert str(profile_error(d)) == 'counters.forward_calls: expected a number, got "many"'


def test_list_of_lists_element():
    d = sample()
    d["ops"][1]["shapes"] = [[4, "x"]]
    assert str(profile_error(d)) == 'ops[1].shapes[0][1]: expected a number, got "x"'


def test_negative_count_rejected():
    d = sample()
    d["steps"]["measured"] = -3
    assert str(profile_error(d)) == "steps.measured: must be at least 0, got -3"
    d = sample()
    d["steps"]["step_s"][1] = -0.5
    assert str(profile_error(d)) == "steps.step_s[1]: must be at least 0, got -0.5"


def test_schema_from_the_future():
    d = sample()
    d["schema"] = "ccprof.profile/9"
    assert str(profile_error(d)) == ('schema: "ccprof.profile/9" is not a version this ccprof reads '
                                     "(ccprof.profile/1)")


def test_schema_missing_or_other_artefact():
    d = sample()
    del d["schema"]
    assert str(profile_error(d)).startswith("schema: missing")
    e = profile_error(sample("advice_sample.json"))
    assert str(e) == 'schema: "ccprof.advice/1" is not a ccprof profile (ccprof.profile/1)'
    d = sample()
    d["schema"] = 1
    assert str(profile_error(d)).startswith("schema: 1 is not a ccprof profile")


def test_top_level_not_an_object():
    assert str(profile_error("[1, 2, 3]")) == "top level: expected an object, got a list"
    with pytest.raises(ArtefactError, match="top level: expected an object, got a list"):
        Profile.from_dict([1, 2, 3])


def test_deep_nesting_in_the_parser():
    e = profile_error("[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in str(e)
    e = profile_error('{"schema": "ccprof.profile/1", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert "nested too deeply" in str(e)


def test_deep_nesting_within_the_parser_limit():
    # deep enough to trouble the report code, shallow enough for json.loads: named by field
    d = sample()
    d["model"]["hf_config"] = {"a": json.loads("[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5))}
    e = profile_error(d)
    assert str(e) == f"model: JSON nested too deeply (over {MAX_DEPTH} levels)"


def test_from_dict_checks_too():
    d = sample()
    d["steps"] = None
    with pytest.raises(ArtefactError, match="^steps: expected an object, got null$"):
        Profile.from_dict(d)


# ---- bad advice ----------------------------------------------------------------------------

def test_advice_string_in_time_saved_frac():
    d = sample("advice_sample.json")
    d["advice"][0]["projected"]["time_saved_frac"] = "lots"
    assert str(advice_error(d)) == 'advice[0].projected.time_saved_frac: expected a number, got "lots"'


def test_advice_missing_tweak_and_plan_null():
    d = sample("advice_sample.json")
    del d["advice"][1]["tweak"]
    assert str(advice_error(d)) == "advice[1].tweak: required but missing"
    d = sample("advice_sample.json")
    d["plan"] = None
    assert str(advice_error(d)) == "plan: expected an object, got null"


def test_advice_plan_step_wrong_type():
    d = sample("advice_sample.json")
    d["plan"]["steps"] = ["mixed_precision"]
    assert str(advice_error(d)) == 'plan.steps[0]: expected an object, got "mixed_precision"'


def test_advice_schema_from_the_future():
    d = sample("advice_sample.json")
    d["schema"] = "ccprof.advice/2"
    assert str(advice_error(d)) == ('schema: "ccprof.advice/2" is not a version this ccprof reads '
                                    "(ccprof.advice/1)")


# ---- the CLI: exit 2, the file and the field named, no traceback --------------------------------

def ccprof(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ccprof", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def assert_bad(res: subprocess.CompletedProcess, path: Path, field: str) -> None:
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert str(path) in res.stderr and field in res.stderr, res.stderr


@pytest.mark.e2e                # the CLI in a subprocess
def test_cli_report_bad_profiles(tmp_path):
    d = sample()
    d["steps"] = None
    steps_null = write(tmp_path, "steps_null.json", d)
    assert_bad(ccprof("report", str(steps_null), "-o", str(tmp_path / "r.html"), cwd=tmp_path),
               steps_null, "steps: expected an object, got null")
    deep = write(tmp_path, "deep.json", "[" * 100_000 + "]" * 100_000)
    assert_bad(ccprof("report", str(deep), cwd=tmp_path), deep, "nested too deeply")
    top = write(tmp_path, "top.json", "[]")
    assert_bad(ccprof("report", str(top), cwd=tmp_path), top, "top level")


@pytest.mark.e2e                # the CLI in a subprocess
def test_cli_advise_bad_profile(tmp_path):
    d = sample()
    d["steps"]["step_s"][2] = "abc"
    bad = write(tmp_path, "profile.json", d)
    res = ccprof("advise", str(bad), cwd=tmp_path)
    assert_bad(res, bad, 'steps.step_s[2]: expected a number, got "abc"')
    assert "not a ccprof profile file" in res.stderr
    assert not (tmp_path / "advice.json").exists()


@pytest.mark.e2e                # the CLI in a subprocess
def test_cli_report_bad_advice(tmp_path):
    write(tmp_path, "profile.json", sample())
    d = sample("advice_sample.json")
    d["advice"][0]["projected"]["time_saved_frac"] = "lots"
    bad = write(tmp_path, "advice.json", d)
    res = ccprof("report", str(tmp_path / "profile.json"), "--advice", str(bad),
                 "-o", str(tmp_path / "r.html"), cwd=tmp_path)
    assert_bad(res, bad, "advice[0].projected.time_saved_frac")


@pytest.mark.e2e                # the CLI in a subprocess
def test_cli_compare_bad_second_profile(tmp_path):
    good = write(tmp_path, "a.json", sample())
    d = sample()
    d["schema"] = "ccprof.profile/9"
    bad = write(tmp_path, "b.json", d)
    res = ccprof("compare", str(good), str(bad), "-o", str(tmp_path / "c.html"), cwd=tmp_path)
    assert_bad(res, bad, 'schema: "ccprof.profile/9" is not a version this ccprof reads')
    assert str(good) not in res.stderr


@pytest.mark.e2e                # the CLI in a subprocess
def test_cli_good_files_still_work(tmp_path):
    # the same commands on valid files: exit 0
    good = write(tmp_path, "profile.json", sample())
    res = ccprof("advise", str(good), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    AdviceSet.from_json(tmp_path / "advice.json")


def test_copy_is_untouched():
    # validation never changes what it reads
    d = sample()
    before = copy.deepcopy(d)
    Profile.from_dict(d)
    assert d == before
