"""The repository's folders that tests read, in one place so a test file can move without its paths."""
from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]            # .../tests
ROOT = TESTS.parent                                     # the repository
EXAMPLES = ROOT / "examples"
FIXTURES = TESTS / "fixtures"                           # saved profiles, advice, gold files
SCRIPTS = TESTS / "scripts"                             # small training scripts, one misread each
EXTERNAL = TESTS / "external"                           # vendored public scripts (see its README.md)
CODEMOD_CASES = TESTS / "codemod_cases"
ARTIFACTS = TESTS / "artifacts"                         # screenshots and timings (gitignored)
