"""Optional parts (pyproject.toml's extras, ccprof/extras.py): the core install imports none of
them, and a path whose extra is missing says so in one line with the install command, exit 2."""
from __future__ import annotations

import pytest

try:
    import tomllib
except ModuleNotFoundError:       # Python 3.10: the tomli backport (a dependency there)
    import tomli as tomllib

from ccprof import extras
from ccprof.api import check_analyze_inputs
from ccprof.exit_codes import CcprofError, ExitCode
from tests.helpers.paths import ROOT, SCRIPTS


def test_extras_match_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    optional = project["optional-dependencies"]
    core = " ".join(project["dependencies"])
    for extra, modules in extras.EXTRAS.items():
        assert extra in optional, extra
        for module in modules:
            assert module in " ".join(optional[extra]) and module not in core, (extra, module)
    assert "ccprof[all]" in optional["test"]        # the README's test command installs every path


def test_a_missing_extra_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(extras.EXTRAS, "dedup", ("no_such_package_for_ccprof",))
    with pytest.raises(CcprofError) as err:
        check_analyze_inputs(SCRIPTS / "uses_argv_and_cwd.py", scan_data=True, out_dir=tmp_path / "out")
    assert err.value.exit_code == ExitCode.BAD_INPUT
    assert str(err.value) == ("--scan-data needs no_such_package_for_ccprof, which is not installed: "
                              "pip install 'ccprof[dedup]'")


def test_installed_extras_pass():
    extras.require("dedup", "--scan-data")          # the test install has every extra
    assert extras.missing("hf") == []
