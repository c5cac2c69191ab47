"""Measure inside a run that is already going: ``ccprof.profile()`` around a loop of your own,
``ccprof.integrations.hf.CcprofCallback`` (a transformers ``TrainerCallback``) and
``ccprof.integrations.lightning.CcprofCallback`` (a Lightning ``Callback``). Each installs the
profiler's ``Session`` with ``keep_running``: after the measured steps it detaches and the
training goes on untouched. ``hf`` and ``lightning`` import their framework; this package does not.
"""
__all__: list[str] = []
