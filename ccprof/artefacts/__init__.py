"""The artefacts the stages hand each other, in one place every stage may import (stages only
look down: the profiler, hardware, advisors, appliers and reports all read these types and
none of them imports another stage to get them).

- ``profile``: ``Profile`` (``ccprof.profile/1``) and its sections, including the hardware
  stage's ``GpuProjection`` and ``Cost``;
- ``advice``: ``Advice``, ``AdviceSet`` (``ccprof.advice/1``), ``Projected``, ``Plan``...

Both round-trip through JSON and are validated on load (``ccprof._serde.ArtefactError``).
"""
from ccprof.artefacts.advice import Advice, AdviceSet, Measured, Plan, PlanStep, Projected, Verification
from ccprof.artefacts.profile import Cost, ErrorInfo, Finding, GpuProjection, Profile

__all__ = ["Profile", "Cost", "GpuProjection", "ErrorInfo", "Finding", "Advice", "AdviceSet", "Projected",
           "Measured", "Verification", "Plan", "PlanStep"]
