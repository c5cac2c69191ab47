"""``--nproc N``: torchrun's launcher without its own traceback.

    python -m ccprof.profiler.launch --standalone --nproc_per_node=N -m ccprof.profiler.harness SPEC

The same arguments as ``python -m torch.distributed.run``. When a rank fails, torchrun raises
``ChildFailedError`` and prints its own traceback and failure table; the user needs their own
error instead, which each rank's harness has already written into its profile (the parent
merges the ranks and prints it, naming the rank). So here the launch runs quietly and exits
with the failing rank's code (3 for the script's error), or 3 for any other rank failure.
"""
from __future__ import annotations

import logging
import os
import sys

from ccprof.exit_codes import ExitCode


def main(argv: list[str] | None = None) -> int:
    # torchrun's INFO/WARNING lines ("Setting OMP_NUM_THREADS...", "Sending process ... closing
    # signal SIGTERM") are launcher chatter, not the script's output
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    import torch.distributed.elastic.agent.server.api  # noqa: F401  (its logger, below)
    from torch.distributed.elastic.multiprocessing.api import SignalException  # here: torch loads only on this path
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError  # here: torch loads only on this path
    from torch.distributed.run import parse_args, run  # here: torch loads only on this path

    quiet = logging.getLogger("torch.distributed")   # its loggers set their own levels: cut them off
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    for name, lg in list(logging.root.manager.loggerDict.items()):
        if name.startswith("torch.distributed") and isinstance(lg, logging.Logger):
            lg.disabled = True

    try:
        run(parse_args(sys.argv[1:] if argv is None else argv))
    except ChildFailedError as exc:
        where = os.environ.get("CCPROF_FIRST_FAILURE")
        if where:       # the root cause: the other ranks then fail on a closed connection
            rank, _ = exc.get_first_failure()
            try:
                with open(where, "w") as fh:
                    fh.write(str(rank))
            except OSError:
                pass
        codes = [f.exitcode for f in exc.failures.values()]
        mine = [c for c in codes if isinstance(c, int) and c > 0]
        return mine[0] if mine else ExitCode.SCRIPT_ERROR
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except SignalException as exc:      # SIGTERM to the launcher: the ranks were stopped
        return 128 + int(getattr(exc, "sigval", 15))
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
