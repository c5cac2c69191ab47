"""The Session's DataLoader watching: iteration, batches and their fingerprints (for
duplicates), and the data section of the Profile (wait, batch time, duplicates)."""
from __future__ import annotations

import weakref
from typing import Any, Callable

import torch

from ccprof.artefacts.fingerprint import row_fingerprints
from ccprof.artefacts.profile import DataInfo
from ccprof.profiler.clock import wall_s
from ccprof.profiler.host import speed_probe
from ccprof.profiler.session_base import (
    MAX_FINGERPRINTS,
    _batch_bytes,
    _describe_batch,
    _distinct_items,
    _first_tensor,
    _loader_info,
    probe_batch_s,
)

# Training iterators remembered for ``one_batch_per_iterator`` (the profiled steps need ~10).
MAX_TRAINING_ITERATORS = 64


class DataWatch:
    """Mixin of ``Session``: DataLoader iteration and the data section (state: ``data``; it counts
    the open step's batches in ``log.cur_batches``)."""

    # ------------------------------------------------------------------ data
    def _wrap_iter(self, orig: Callable) -> Callable:
        session = self

        def __iter__(loader):
            if session.on_loader_iter is not None:
                session.on_loader_iter(loader)
            it = orig(loader)
            session.data.iterators_made += 1
            try:
                it._ccprof_loader = weakref.ref(loader)
                it._ccprof_serial = session.data.iterators_made     # ids of dropped iterators recur
            except Exception:
                pass
            # a new iterator (its id may be a dead one's): nothing pending from before
            session.data.pending_fp.pop(id(it), None)
            session.data.it_batches.pop(id(it), None)
            if not any(r() is loader for r in session.data.loaders):
                session.data.loaders.append(weakref.ref(loader))
            if session.data.dataset is None:
                # strong: loops that build a DataLoader per epoch drop it before --scan-data runs
                session.data.dataset = getattr(loader, "dataset", None)
            return it

        __iter__.__wrapped__ = orig
        return __iter__

    def _wrap_next(self, orig: Callable) -> Callable:
        session = self

        def __next__(it):
            if session.data.in_next:
                return orig(it)
            session.data.in_next = True
            prev = session.clock.phase
            if session.clock.step_t0 is not None:
                session._set_phase("data", sync=False)
            t0 = wall_s()
            try:
                batch = orig(it)
            finally:
                session.data.in_next = False
                session.data.wait_s += wall_s() - t0
                if session.clock.step_t0 is not None:
                    session._set_phase(prev, sync=False)
            session.log.cur_batches += 1
            session._on_batch(it, batch)
            return batch

        __next__.__wrapped__ = orig
        return __next__

    def _on_batch(self, it: Any, batch: Any) -> None:
        self.counters["batches"] += 1
        loader = getattr(it, "_ccprof_loader", lambda: None)()
        if loader is not None:
            self.site_rec.on_batch(loader, grad=torch.is_grad_enabled())
            self.data.last_loader = weakref.ref(loader)
            if not self.data.loader_info:
                self.data.loader_info = _loader_info(loader)
        if not self.data.batch_shapes:
            self.data.batch_shapes = _describe_batch(batch)
        if self.data.batch_bytes is None:
            self.data.batch_bytes = _batch_bytes(batch)
        if loader is not None and self.clock.step_t0 is not None:
            self.data.train_loader = weakref.ref(loader)
        key = id(it)
        self.data.it_batches[key] = self.data.it_batches.get(key, 0) + 1
        self.data.last_it = key
        self.data.last_it_serial = getattr(it, "_ccprof_serial", None)
        if self._timed_step() or len(self.data.fingerprints) + self._pending_count() >= MAX_FINGERPRINTS:
            return      # hashing costs time: only in warm-up and pass steps
        t = _first_tensor(batch)
        if t is not None:
            try:
                self.data.pending_fp.setdefault(key, []).extend(row_fingerprints(t))
            except Exception:
                pass

    def _note_training_iterator(self, key: int) -> None:
        serial, d = self.data.last_it_serial, self.data.trained_it_batches
        if serial is not None and (serial in d or len(d) < MAX_TRAINING_ITERATORS):
            d[serial] = self.data.it_batches.get(key, 0)

    def one_batch_per_iterator(self) -> bool:
        """The training takes one batch from each new iterator of a loader longer than one batch
        (``for epoch in range(E): xb, yb = next(iter(loader))``, or a loop that breaks after its
        first batch): no step walks the loader, so its length is no epoch of this run."""
        counts = list(self.data.trained_it_batches.values())
        spe = self.data.loader_info.get("steps_per_epoch")
        return len(counts) >= 3 and max(counts) == 1 and bool(spe) and spe > 1

    def _pending_count(self) -> int:
        return sum(len(v) for v in self.data.pending_fp.values())

    def _flush_fingerprints(self, key: int) -> None:
        """Keep an iterator's sampled rows once its batch fed a backward: training data.

        ``next(iter(loader))`` to peek at one batch (the DDP tutorial prints its shapes) and the
        batches an evaluation reads (llama2.c's estimate_loss re-reads the train split) never
        do, and their rows would count as duplicates of the epoch that follows."""
        rows = self.data.pending_fp.pop(key, [])
        self.data.pending_fp.clear()            # other iterators' rows did not reach this backward
        room = MAX_FINGERPRINTS - len(self.data.fingerprints)
        if rows and room > 0:
            self.data.fingerprints.extend(rows[:room])


    def build_data(self, probe: bool = True) -> DataInfo:
        info = self.data.loader_info
        fps = self.data.fingerprints
        dup = None
        scope = "sampled"
        if len(fps) >= 2:
            dup = 1.0 - len(set(fps)) / len(fps)
            n_data = info.get("dataset_len")
            if info.get("replacement") and n_data:
                # a sampler drawing with replacement repeats rows by itself (minGPT's adder): the
                # duplicates are the rows the data lacks, from how many distinct ones the draws saw
                n, k, N = len(fps), len(set(fps)), int(n_data)
                q1, q2 = (1 - 1 / N) ** n, (1 - 2 / N) ** n
                expect = N * (1 - q1)
                sd = max(N * (N - 1) * q2 + N * q1 - N * N * q1 * q1, 1e-9) ** 0.5
                # fewer distinct rows than N distinct items would give, beyond chance (3.5 sd):
                # only then are there duplicates, and D distinct items explain what was seen
                dup = 0.0 if (expect - k) / sd < 3.5 else max(0.0, 1.0 - _distinct_items(n, k, N) / N)
                scope = "sampled with replacement (the sampler's own repeats discounted)"
        wait = None
        clean_s, clean_phases = self._clean_steps()
        if clean_s and clean_phases:
            wait = sum(d["data"] for d in clean_phases) / sum(clean_s)
        seq_len = None
        token_inputs = False
        ex = _first_tensor(self.data.example_input) if self.data.example_input else None
        if ex is not None and not ex.is_floating_point() and ex.dim() == 2:
            token_inputs = True
            seq_len = int(ex.shape[1])
        batch_size = info.get("batch_size")
        if batch_size is None and ex is not None and ex.dim() >= 1:
            batch_size = int(ex.shape[0])
        shapes = self.data.batch_shapes
        if not shapes and self.data.example_input is not None:
            shapes = _describe_batch(list(self.data.example_input[0]) + list(self.data.example_input[1].values()))
        per_step = self.log.batches_per_step
        bps = (sum(per_step) / len(per_step)) if per_step else None
        batch = self._batch_time(bps, info.get("num_workers"), probe)
        return DataInfo(
            batch_size=batch_size, shapes=shapes,
            num_workers=info.get("num_workers"), pin_memory=info.get("pin_memory"),
            persistent_workers=info.get("persistent_workers"), dataset_len=info.get("dataset_len"),
            steps_per_epoch=None if self.one_batch_per_iterator() else info.get("steps_per_epoch"), wait_frac=wait,
            fingerprints=fps[:512], duplicate_frac=dup, duplicate_scope=scope,
            token_inputs=token_inputs, seq_len=seq_len, dataloader_seen=bool(self.data.loaders),
            batches_per_step=bps, batch_bytes=self.data.batch_bytes, finite=info.get("finite"), **batch,
        )

    def _batch_time(self, bps: float | None, workers: int | None, probe: bool = True) -> dict[str, Any]:
        """One batch's making in one process (see DataInfo.batch_s): the fastest of the training
        loader's fetches, timed where they ran (thread CPU time), and of batches made again in the
        main process after the run (``probe``; not in a mid-run checkpoint). Never inferred from
        the training step's time."""
        if not bps or not self.data.loaders:
            return {}
        loader = self.data.train_loader() if self.data.train_loader is not None else None
        ds_id = id(getattr(loader, "dataset", None)) if loader is not None else None
        workers = int(workers or 0)
        if workers:
            fetches = self._collect_worker_fetches()
            where = f"inside the {workers} DataLoader workers"
        else:
            fetches = list(self.host.main_fetches)
            where = "in the main process (num_workers=0)"
        mine = [(cpu, wall) for d, cpu, wall, _ in fetches if ds_id is not None and d == ds_id]
        again, how = (self._probe_batch_time() if probe else ([], "not probed in a mid-run checkpoint"))
        if not mine and not again:
            return {"batch_s_method": how}
        return _fastest(mine, where, again)

    def _probe_batch_time(self) -> tuple[list[tuple[float, float]], str]:
        """Batches made again in this process from the training loader's dataset, each timed
        (the RNGs restored): more samples of the fastest batch, with the script stopped."""
        loader = self.data.train_loader() if self.data.train_loader is not None else None
        if loader is None:
            return [], "unknown: the batches were not timed and no training loader was kept to probe"
        # the speed probe just before and after, in the same spell of this (maybe shared) core: the
        # batches are stated at the core's fastest probe (HostInfo.probe_s) as the run's batches are
        before = min(speed_probe() for _ in range(5))
        times, how = probe_batch_s(loader)
        burst = min(before, min(speed_probe() for _ in range(5)))
        self.host.burst_probes.append(burst)
        fastest = self._host().probe_s or burst          # the fastest of the run, this burst's included
        scale = fastest / burst if burst > 0 else 1.0
        # only the CPU part speeds up with the core; time off the CPU (I/O) stays what it was
        return [(cpu * scale, wall - cpu + cpu * scale) for cpu, wall in times], how


# How far the fastest batch of one script moved between runs on ccprof's own CI machines (a
# shared 2-core cloud VM; bench/stability.py, examples/cnn.py: 1.33 to 1.42 ms, and to 1.73 ms
# when every probe ran in a slow spell): 8%, the band's least upper end.
FASTEST_BATCH_SPREAD = 0.08


def _fastest(run: list[tuple[float, float]], where: str, again: list[tuple[float, float]]) -> dict[str, Any]:
    """The batch time as the fastest batch made, in CPU seconds: contention only slows, so the
    fastest is this machine's own speed. ``run``: the batches the run made ``where`` they were
    made; ``again``: batches made again in the main process after the run. The band's upper end
    is the fastest tenth, and at least ``FASTEST_BATCH_SPREAD`` above the fastest.

    Time off the CPU (a disk or network read, a sleep) is not CPU time: when even the batch with
    the fastest wall time spent more than half of it off the CPU, that wait is the batch's I/O
    (``batch_io_s``), added as it is; below that, off-CPU time is taken for the machine's load."""
    rows = run + again
    cpu = sorted(r[0] for r in rows)
    # the band: the fastest tenth, and at least what the fastest batch itself moves between runs
    tenth = max(cpu[max(0, len(cpu) // 10 - 1)], cpu[0] * (1 + FASTEST_BATCH_SPREAD))
    w_cpu, w_wall = min(rows, key=lambda r: r[1])
    io = w_wall - w_cpu if w_wall > 2 * w_cpu else 0.0
    io_text = (f"; it also waits {io * 1e3:.1f} ms off the CPU (I/O, sleeps), the off-CPU time of the batch with "
               f"the fastest wall time" if io else "")
    parts = ([f"{len(run)} made {where}"] if run else []) + (
        [f"{len(again)} made again in the main process after the run, on one thread"] if again else [])
    return {"batch_s": cpu[0], "batch_s_lo": cpu[0], "batch_s_hi": tenth, "batch_s_n": len(rows),
            "batch_clock": "thread_cpu", "batch_io_s": io,
            "batch_s_method": (f"thread CPU time of making a batch (the dataset's __getitem__ and collate_fn): "
                               f"the fastest of {' and '.join(parts)}{io_text}")}
