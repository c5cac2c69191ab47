"""Test-suite wiring: everything under tests/e2e/ is marked ``e2e`` (deselect it with
``pytest -m "not e2e"`` for the fast loop), and the profiles cached for the session are checked
to be unchanged by the tests that shared them.

``e2e`` means the test starts another process: the CLI or a script in a subprocess, the public
scripts, faults, a browser. Such tests live in tests/e2e/; the few that share a unit test file's
helpers stay there and carry ``@pytest.mark.e2e`` themselves.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

E2E = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", autouse=True)
def _shared_profiles_unchanged():
    """A test that changes a cached profile in place would change what later tests see."""
    yield
    profiles = sys.modules.get("tests.helpers.profiles")
    if profiles is None:
        return
    changed = [name for name, build in ((b.__name__, b) for b in profiles.CACHED)
               if name in profiles.BUILT and build().to_json() != profiles.BUILT[name]]
    assert not changed, f"a test changed the cached profile of {changed} in place; use dataclasses.replace"
