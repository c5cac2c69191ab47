import json
from dataclasses import replace

import pytest

from ccprof.advisors import AdviceContext, advise_one
from ccprof.advisors.history import HistoryError, load_csv, load_history, load_trainer_state, plateau
from ccprof.artefacts.profile import StaticFacts
from tests.helpers.profiles import hand_profile, llama_plain

LOSSES = [3.0, 2.0, 1.5, 1.4, 1.41, 1.42, 1.43, 1.44, 1.45, 1.46]     # steps 100..1000


def write_csv(tmp_path, losses=LOSSES):
    f = tmp_path / "hist.csv"
    f.write_text("step,val_loss\n" + "".join(f"{100 * (i + 1)},{v}\n" for i, v in enumerate(losses)))
    return f


def test_plateau_patience():
    pl = plateau([(100 * (i + 1), v) for i, v in enumerate(LOSSES)], patience=3)
    # best 1.4 at 400; 500, 600, 700 do not improve -> stop at 700
    assert (pl.best_step, pl.best_loss, pl.stop_step) == (400, 1.4, 700)


def test_loaders(tmp_path):
    assert load_csv(write_csv(tmp_path))[3] == (400.0, 1.4)
    ts = tmp_path / "trainer_state.json"
    ts.write_text(json.dumps({"log_history": [{"step": 10, "loss": 3.0}, {"step": 10, "eval_loss": 2.5},
                                              {"step": 20, "eval_loss": 2.0}]}))
    assert load_trainer_state(ts) == [(10.0, 2.5), (20.0, 2.0)]
    assert load_history(tmp_path / "trainer_state.json") == load_history(ts)
    with pytest.raises(HistoryError):
        load_history(tmp_path / "missing.csv")


def test_formula_saving_from_csv(tmp_path):
    a = advise_one("early_stopping", hand_profile(), AdviceContext(history=str(write_csv(tmp_path))))
    # stop at 700 of the planned 10,000 steps -> 93% of the run, $10 -> $9.30
    assert a.status == "recommended"
    assert a.projected.time_saved_frac == pytest.approx(0.93)
    assert a.projected.usd_saved == pytest.approx(9.3)
    assert "step 700" in a.rationale and a.details["time_scope"] == "run"


def test_still_improving_uses_the_fit(tmp_path):
    # loss = 1 + 10/step^0.5, still improving at step 1000; plateau well before 1e8 steps
    losses = [1 + 10 / (s ** 0.5) for s in range(100, 1100, 100)]
    f = write_csv(tmp_path, losses)
    a = advise_one("early_stopping", hand_profile(), AdviceContext(history=str(f), run_steps=100_000_000))
    assert a.status == "recommended" and "fitted curve" in a.rationale
    assert a.details["fit"]["c"] == pytest.approx(0.5, abs=0.06)


def test_without_history_says_what_to_pass():
    a = advise_one("early_stopping", llama_plain())
    assert a.status == "not_applicable" and "--history" in a.rationale and "no validation loop" in a.rationale
    p = replace(llama_plain(), static=StaticFacts(validation=True, lines={"validation": 40}))
    assert "line 40" in advise_one("early_stopping", p).rationale


def test_already_applied():
    p = replace(llama_plain(), static=StaticFacts(early_stopping=True, lines={"early_stopping": 88}))
    assert advise_one("early_stopping", p).status == "already_applied"


def test_tensorboard_dir_without_the_package_says_what_to_do(tmp_path):
    (tmp_path / "events.out.tfevents.1.host").write_bytes(b"")
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(HistoryError, match=r"pip install .ccprof\[tensorboard\]."):
            load_history(tmp_path)
        a = advise_one("early_stopping", hand_profile(), AdviceContext(history=str(tmp_path)))
        assert a.status == "not_applicable" and "tensorboard" in a.rationale
    else:
        with pytest.raises(HistoryError):
            load_history(tmp_path)       # an empty event file has no validation-loss scalar
