"""The host a projection assumes, and a profile's host work priced on it.

The host side of a GPU step is PyTorch's dispatch of every op (plus its CUDA launch,
``step.CUDA_LAUNCH_S``), the Python each phase runs (the model's ``forward`` bodies and module
calls, the optimizer's, the loop's own glue: batch sampling, ``zero_grad``, clipping, logging),
and the DataLoader's batches. The profile *counts* the first two (aten ops and module calls in
the FLOP step, Python bytecodes by phase in a step of their own) and *times* only what a count cannot
give, a batch's making, in CPU time over a speed probe run beside it. This module prices them
all on one stated host, so the same script analyzed twice, on an idle or a busy machine, gets
the same host seconds:

    host seconds = ops x dispatch_s + module calls x module_call_s (older profiles without
                   bytecode counts) + bytecodes x opcode_s, each / speed
    batch seconds = the batch's CPU time x (reference probe / this host's probe) / speed
                    + its time off the CPU (I/O), as measured

``REFERENCE_HOST`` holds the figures ``bench/host_reference.py`` measured on an AMD EPYC Zen 3
("Milan") server core, the host CPU family of AWS p5 (H100) instances, as the best of 20 rounds:
the core's own speed, not its neighbours'. ``speed`` is how much faster the GPU machine's host
runs than the reference: 1 unless stated (``--host-speed``, or ``host_speed`` in a catalog file's
``[host]`` table).

    >>> side = host_side(Profile())
    >>> side.dispatch_s == REFERENCE_HOST.dispatch_s and side.speed == 1.0
    True
"""
from __future__ import annotations

from dataclasses import dataclass

from ccprof.artefacts.profile import Profile
from ccprof.hardware.inputs import StepInputs, step_inputs

__all__ = ["HostSpec", "HostSide", "REFERENCE_HOST", "host_side", "SPEED_BOUNDS"]


@dataclass(frozen=True)
class HostSpec:
    """A host CPU's cost of PyTorch host work, in seconds (one core, thread CPU time)."""
    name: str
    dispatch_s: float          # one aten op called from Python (torch.add on 4 elements, grad off)
    module_call_s: float       # the extra of nn.Module.__call__ around it
    opcode_s: float            # one Python bytecode (median over a corpus of training-loop code)
    probe_s: float             # one round of ccprof.profiler.host.speed_probe
    source: str


# bench/host_reference.py --rounds 20, 2026-12-07 (bench/results/host-reference-2026-12-07-cpu.txt):
# Python 3.11.7, torch 2.13.0+cpu, on an AMD EPYC family 25 model 1 (Zen 3 "Milan", 2.45 GHz) KVM
# guest core. Best of 20 rounds: the same code's slowest round was up to 2.5x slower (a shared
# host), while its counts (aten ops, bytecodes) repeated exactly in every round.
REFERENCE_HOST = HostSpec(
    name="AMD EPYC Zen 3 (Milan) server core, 2.45 GHz",
    dispatch_s=1.66e-6,
    module_call_s=1.49e-6,
    opcode_s=14.8e-9,
    probe_s=6.45e-6,
    source=("measured by ccprof's bench/host_reference.py on an AMD EPYC Zen 3 core (Python 3.11, "
            "PyTorch 2.13), best of 20 rounds, 2026-12-07"),
)

# This host's speed against the reference's, from the speed probe, is kept within these bounds:
# beyond them the probe met a machine too busy to measure, not a CPU that much faster or slower
HOST_FACTOR_BOUNDS = (1 / 3, 3.0)
# A stated host speed outside these bounds is a typo, not a CPU (a 2026 server core is within 3x
# of another in single-thread speed: SPEC CPU2017 integer rate per core)
SPEED_BOUNDS = (0.2, 5.0)


@dataclass(frozen=True)
class HostSide:
    """A profile's host work priced on the target host."""
    dispatch_s: float                        # per aten op
    module_call_s: float                     # per module call (used only without bytecode counts)
    python_s: dict[str, float] | None        # each phase's Python, when its bytecodes were counted
    batch_s: float | None                    # one batch's making (one process), and its 95% interval
    batch_s_lo: float | None
    batch_s_hi: float | None
    speed: float
    how: str


def _speed(inputs: StepInputs) -> tuple[float, str]:
    h = inputs.host
    if h.target_speed:
        lo, hi = SPEED_BOUNDS
        s = min(max(float(h.target_speed), lo), hi)
        return s, f"a host {s:g}x as fast as the reference, as stated"
    return 1.0, "the reference host"


def host_side(profile: Profile | StepInputs, reference: HostSpec = REFERENCE_HOST) -> HostSide:
    """The profile's host work priced on the target host (see the module docstring).

    Input: a Profile or its :class:`~ccprof.hardware.inputs.StepInputs` (host counts, data timing).
    Output: per-op and per-module-call seconds, each phase's Python seconds (None for profiles
    without bytecode counts), the batch time with its interval, the speed and a sentence saying
    which host and how. Pure: the same profile gives the same figures.
    """
    inputs = step_inputs(profile)
    speed, who = _speed(inputs)
    h = inputs.host
    python_s = None
    if h.opcodes is not None:
        python_s = {ph: n * reference.opcode_s / speed for ph, n in h.opcodes.items()}
    d = inputs.data
    batch = lo = hi = None
    if d.batch_s is not None and d.batch_s > 0:
        if d.batch_clock == "thread_cpu" and h.probe_s:
            here = min(max(reference.probe_s / h.probe_s, HOST_FACTOR_BOUNDS[0]), HOST_FACTOR_BOUNDS[1])
            scale = here / speed
            batch_how = (f"the batch's CPU time here x {here:.2f} (this host's speed probe against the "
                         "reference's, the fastest of each)")
        else:
            scale = 1.0 / speed
            batch_how = "the batch time as measured on the profiling host"
        io = d.batch_io_s or 0.0             # waiting on a disk or the network: not the CPU's speed
        batch = d.batch_s * scale + io
        lo = d.batch_s_lo * scale + io if d.batch_s_lo is not None else batch
        hi = d.batch_s_hi * scale + io if d.batch_s_hi is not None else batch
        if io:
            batch_how += f", plus {io * 1e3:.1f} ms off the CPU (I/O) as measured"
    else:
        batch_how = ""
    how = (f"{who} ({reference.name}): {reference.dispatch_s * 1e6:.2f} us per op dispatched, "
           + (f"{reference.opcode_s * 1e9:.1f} ns per Python bytecode counted"
              if python_s is not None else f"{reference.module_call_s * 1e6:.2f} us per module call")
           + (f"; {batch_how}" if batch_how else "") + f"; figures {reference.source}")
    return HostSide(dispatch_s=reference.dispatch_s / speed, module_call_s=reference.module_call_s / speed,
                    python_s=python_s, batch_s=batch, batch_s_lo=lo, batch_s_hi=hi, speed=speed, how=how)
