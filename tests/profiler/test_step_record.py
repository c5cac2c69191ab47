"""The steps section as a pure function of the step clock's record (issue 12: the Profile's
assembly apart from the Session that measured it)."""
from __future__ import annotations

import math

import pytest

from ccprof.profiler.step_record import StepRecord, micro_batches_per_step, steps_section


def _phases(data, fwd):
    return {"data": data, "forward": fwd, "backward": 2 * fwd, "optimizer": 0.01, "other": 0.0}


def test_steps_right_after_a_checkpoint_are_left_out_of_the_phases_with_workers():
    rec = StepRecord(warmup=2, step_s=[0.1, 0.02, 0.1, 0.1], loader_workers=2, after_checkpoint=frozenset({1}),
                     phase_totals=[_phases(0.04, 0.02), _phases(0.0, 0.005), _phases(0.04, 0.02), _phases(0.04, 0.02)],
                     losses=[2.0, float("nan"), 1.5, 1.4], samples=[8, 8, 8, 8], tokens=[256] * 4)
    s = steps_section(rec)
    assert s.measured == 4 and s.step_s == rec.step_s          # every step is kept in step_s
    assert s.phase_s["data"] == pytest.approx(0.04)           # the prefetched step is not in the phases
    assert s.loss == [2.0, 1.5, 1.4] and not any(math.isnan(x) for x in s.loss)
    assert (s.samples_per_step, s.tokens_per_step, s.warmup) == (8, 256, 2)
    # without workers nothing was prefetched: every step counts
    assert steps_section(StepRecord(**{**rec.__dict__, "loader_workers": 0})).phase_s["data"] == pytest.approx(0.03)


def test_micro_batches_are_loader_batches_when_a_loader_fed_the_steps():
    gan = StepRecord(backwards=[2, 2, 2], batches=[1, 1, 1], fed_by_loader=True)
    assert micro_batches_per_step(gan) == 1                  # two losses on one batch: not accumulation
    accum = StepRecord(backwards=[4, 4], batches=[4, 4], fed_by_loader=True)
    assert micro_batches_per_step(accum) == 4
    assert micro_batches_per_step(StepRecord(backwards=[3, 3])) == 3   # no loader: backwards per step
    assert micro_batches_per_step(StepRecord()) == 1
    assert steps_section(StepRecord()).phase_s == {}


def test_backwards_inside_a_closure_are_not_micro_batches():
    # LBFGS: every backward ran inside optimizer.step(closure), so none counts as a micro-batch
    lbfgs = StepRecord(backwards=[0, 0, 0], closure_backwards=[5, 4, 5])
    s = steps_section(lbfgs)
    assert s.micro_batches == 1
    assert s.closure_backwards == 5                          # round(14 / 3)
    assert steps_section(StepRecord(backwards=[4, 4])).closure_backwards == 0
