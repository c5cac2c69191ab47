"""What the run itself saw of the script (profile.json's ``sites``, ``ccprof.profiler.sites``), as
the codemods ask it: which loader fed training, where it was built, and where each of its values
came from. Empty without a profile (``ccprof apply -t ...`` with no ``--from``): the codemods then
read the script alone."""
from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

from ccprof.artefacts.profile import CallSite, Setting

__all__ = ["RunSites", "load_sites", "where", "place"]


class RunSites:
    """The run's ``CallSite`` records; falsy when there are none."""

    def __init__(self, sites: Iterable[CallSite | dict[str, Any]] = ()) -> None:
        self.sites: list[CallSite] = [s if isinstance(s, CallSite) else _site(s) for s in sites]

    def __bool__(self) -> bool:
        return bool(self.sites)

    def of(self, what: str, role: str | None = None) -> list[CallSite]:
        """The sites of one kind (``"dataloader"``, ``"optimizer"``, ``"model"``, ``"forward"``,
        ``"accelerator"``, ``"training_args"``), of one role when given (``"train"``)."""
        return [s for s in self.sites if s.what == what and (role is None or s.role == role)]

    def training(self, what: str) -> CallSite | None:
        """The one site of ``what`` that served training (role ``"train"``), else the only site of
        that kind; None when the run does not tell."""
        train = self.of(what, "train")
        if train:
            return train[0]
        every = self.of(what)
        return every[0] if len(every) == 1 else None

    @staticmethod
    def setting(site: CallSite | None, name: str) -> Setting | None:
        """The setting ``name`` of ``site`` (``"batch_size"``), None when not recorded."""
        if site is None:
            return None
        return next((s for s in site.settings if s.name == name), None)

    @staticmethod
    def outside(sites: Iterable[CallSite], script: str, how: str = "reached from") -> tuple[CallSite, str] | None:
        """The first of ``sites`` in a file other than ``script``, with where it is (``where``) and,
        when the stack shows it, the line of the script that reached it (``"model.py:12, reached from
        line 40 of this script"``, ``how`` the verb); None when every site is in the script."""
        for s in sites:
            if not RunSites.in_script(s.file, script):
                called = next((f for f in s.stack if f and RunSites.in_script(str(f[0]), script)), None)
                return s, where(s, script) + (f", {how} line {called[1]} of this script" if called else "")
        return None

    @staticmethod
    def in_script(file: str, script: str) -> bool:
        """Whether a site's ``file`` is the script being rewritten (``script``: its path)."""
        if not file:
            return False
        return os.path.basename(file) == os.path.basename(script) and (
            not os.path.isabs(file) or os.path.abspath(file) == os.path.abspath(script))


def where(site: CallSite, script: str) -> str:
    """``file:line`` of ``site``, the file relative to the folder of ``script`` (the path being
    rewritten) when the site's path is absolute: ``../../mingpt/trainer.py:74``."""
    return place(site.file, site.line, script)


def place(file: str, line: int, script: str) -> str:
    """``file:line``, ``file`` made relative to the folder of ``script`` when it is absolute."""
    if file and os.path.isabs(file) and script:
        file = os.path.relpath(file, os.path.dirname(os.path.abspath(script)))
    return f"{file}:{line}" if file else "a file ccprof was not shown"


def _site(data: dict[str, Any]) -> CallSite:
    from ccprof import _serde

    return _serde.from_dict(CallSite, data)


def load_sites(profile_path: str | os.PathLike[str]) -> Sequence[CallSite]:
    """The ``sites`` of a profile.json; () when it has none or cannot be read."""
    import json

    try:
        data = json.loads(open(profile_path, encoding="utf-8").read()).get("sites") or []
        return [_site(d) for d in data]
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        return ()
