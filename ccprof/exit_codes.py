"""ccprof's exit codes: the one table every command, the runner and the harness choose from.

    from ccprof.exit_codes import ExitCode
    sys.exit(ExitCode.BAD_INPUT)        # 2

README's table says what is kept on each. ``ccprof --help`` lists them (``help_text``).
"""
from __future__ import annotations

import enum

__all__ = ["ExitCode", "CcprofError", "help_text"]


class ExitCode(enum.IntEnum):
    """Why ccprof (or the harness child it started) exited."""

    OK = 0
    STAGE_FAILED = 1        # a ccprof stage failed after the measurement (a ccprof bug; what was kept is said)
    BAD_INPUT = 2           # bad usage or input, found before the script runs
    SCRIPT_ERROR = 3        # the user's script failed: syntax error, exception, a rank under --nproc, a signal
    NOTHING_MEASURED = 4    # nothing to measure: the script ended, never trained, or timed out
    VERIFY_FAILED = 5       # every --verify re-run failed (the baseline was measured)
    NOT_ALL_APPLIED = 6     # ccprof apply: some requested tweaks could not be written (each named, with its reason)
    INTERRUPTED = 130       # Ctrl-C
    TERMINATED = 143        # SIGTERM (timeout(1), CI runners, Slurm)


class CcprofError(Exception):
    """An error ccprof tells the user in one line, in their terms, and exits on with ``exit_code``
    (the CLI prints ``ccprof: <message>``). Subclasses: bad input (``ScriptError``,
    ``OutputError``, ``ccprof.api.UsageError``), a failed stage (``ccprof.api.StageError``)."""

    exit_code: ExitCode = ExitCode.BAD_INPUT

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = ExitCode(exit_code)


_MEANING = {
    ExitCode.OK: "ok",
    ExitCode.STAGE_FAILED: "a ccprof stage failed after the measurement",
    ExitCode.BAD_INPUT: "bad usage or input, found before the script runs",
    ExitCode.SCRIPT_ERROR: "the script failed (syntax error, exception, a rank under --nproc, a signal)",
    ExitCode.NOTHING_MEASURED: "nothing to measure (ended, never trained, timed out)",
    ExitCode.VERIFY_FAILED: "every --verify re-run failed",
    ExitCode.NOT_ALL_APPLIED: "apply: some requested tweaks could not be written (each named, with why)",
    ExitCode.INTERRUPTED: "Ctrl-C",
    ExitCode.TERMINATED: "SIGTERM",
}


def help_text() -> str:
    """The exit codes as lines for ``ccprof --help``: ``"  2  bad usage or input, ..."``."""
    return "\n".join(f"{int(c):>5}  {_MEANING[c]}" for c in ExitCode)
