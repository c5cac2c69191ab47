"""Moved to ``ccprof.artefacts.advice`` (the artefact types every stage shares); this name
stays for code that imported it from here."""
from ccprof.artefacts.advice import *  # noqa: F401,F403
from ccprof.artefacts.advice import __all__  # noqa: F401
