"""The tweak catalog now lives in ``ccprof.artefacts.tweaks`` (every stage reads it; stages only
look down). Re-exported here for older imports."""
from ccprof.artefacts.tweaks import MORE, TWEAKS, TWELVE, TweakInfo

__all__ = ["TweakInfo", "TWEAKS", "TWELVE", "MORE"]
