"""Moved to ``ccprof.artefacts.profile`` (the artefact types every stage shares); this name
stays for code that imported it from here."""
from ccprof.artefacts.profile import *  # noqa: F401,F403
from ccprof.artefacts.profile import __all__  # noqa: F401
