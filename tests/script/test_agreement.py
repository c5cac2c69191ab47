"""analyze and apply read a script the same way: for every tweak with a codemod that checks
"already applied", the profiler's static facts (read as the harness reads them, with the run's
argv) say the script already has it exactly when ``apply_source`` (what ``ccprof apply`` runs)
answers "already applied". Both ask ``ccprof.script.applied``; this test keeps it so.

Scripts: the bundled examples, the vendored public scripts of tests/external, and the small
scripts of tests/scripts/agreement, each hitting one "already applied" rule (several run with
more than one command line: a flag off, the flag on, no run known).
"""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from ccprof.applier.codemods import apply_source, codemod_ids
from ccprof.artefacts.tweaks import TWEAKS
from ccprof.profiler.static import static_facts_from_source

ROOT = Path(__file__).resolve().parents[2]
AGREEMENT = ROOT / "tests" / "scripts" / "agreement"

# the command lines the external scripts are profiled with in tests/test_external_*.py (the flags
# that matter here: nanoGPT and llama2.c turn compile off)
NANOGPT_ARGV = ["--dataset=tiny_char", "--device=cpu", "--compile=False", "--wandb_log=False", "--eval_iters=2",
                "--batch_size=4", "--gradient_accumulation_steps=2"]
LLAMA2C_ARGV = ["--vocab_source=custom", "--device=cpu", "--dtype=float32", "--compile=False", "--batch_size=4",
                "--gradient_accumulation_steps=2", "--eval_iters=2"]
EXTERNAL_ARGV = {
    "nanogpt/train.py": NANOGPT_ARGV,
    "llama2c/train.py": LLAMA2C_ARGV,
    "word_language_model/main.py": ["--data", "./data/tiny", "--emsize", "16", "--nhid", "16", "--epochs", "3"],
    "gat/main.py": ["--num-heads", "1", "--hidden-dim", "8", "--no-accel", "--epochs", "300"],
    "mingpt/projects/chargpt/chargpt.py": ["--trainer.num_workers=0", "--trainer.device=cpu"],
    "mingpt/projects/adder/adder.py": ["--trainer.num_workers=0", "--trainer.device=cpu"],
}

# small scripts -> the command lines each is read with (None: no run known, as `apply -t`)
AGREEMENT_ARGV: dict[str, list[list[str] | None]] = {
    "autocast_flag.py": [[], ["--dtype", "bfloat16"], None],
    "grad_scaler_flag.py": [[], ["--amp"], None],
    "compile_flag.py": [[], ["--compile"], None],
    "config_flag.py": [[], ["--compile=True"], ["--tf32=False"], None],
    "dataloader_workers.py": [[], ["--workers", "0"], None],
    "accelerate_flag.py": [[], ["--mixed_precision", "bf16"], ["--mixed_precision=fp16"], None],
}

# what each small script must read as (fact -> on in the run of its first command line); the
# agreement alone would pass if both stages missed a fact together
EXPECTED = {
    "accumulation_modulo.py": {"accumulation": True},
    "accumulation_name_trap.py": {"accumulation": False},
    "accumulation_inner_loop.py": {"accumulation": True},
    "accumulation_counter.py": {"accumulation": True},
    "autocast_plain.py": {"autocast": True},
    "autocast_flag.py": {"autocast": False},
    "accelerate_flag.py": {"autocast": False},
    "grad_scaler_flag.py": {"autocast": False, "grad_scaler": False},
    "checkpointing.py": {"checkpointing": True},
    "compile_flag.py": {"compile": False},
    "config_flag.py": {"compile": False, "tf32": True},
    "tf32.py": {"tf32": True},
    "fused_optimizer.py": {"fused_optimizer": True},
    "dataloader_workers.py": {"dataloader": True},
    "early_stopping.py": {"early_stopping": True},
    "early_stopping_name_trap.py": {"early_stopping": False},
    "ddp.py": {"ddp": True},
    "peft_lora.py": {"peft": True},
    "hf_settings.py": {"autocast": True, "accumulation": True, "checkpointing": True, "compile": True,
                       "tf32": True, "fused_optimizer": True, "dataloader": True},
    "lightning_settings.py": {"autocast": True, "accumulation": True, "ddp": True},
}


def _checked_tweaks() -> list[str]:
    """Tweaks whose codemod says "already applied" from facts of ccprof.script.applied."""
    return [t for t in codemod_ids() if TWEAKS[t].facts]


def _cases() -> list:
    cases = []
    for path in sorted((ROOT / "examples").glob("*.py")):
        cases.append(pytest.param(path, [], id=f"examples/{path.name}"))
    for path in sorted((ROOT / "tests" / "external").rglob("*.py")):
        rel = path.relative_to(ROOT / "tests" / "external").as_posix()
        if path.stat().st_size:
            cases.append(pytest.param(path, EXTERNAL_ARGV.get(rel, []), id=f"external/{rel}"))
    for path in sorted(AGREEMENT.glob("*.py")):
        for i, argv in enumerate(AGREEMENT_ARGV.get(path.name, [[]])):
            cases.append(pytest.param(path, argv, id=f"agreement/{path.name}-{i}"))
    return cases


def _reads(path: Path, argv: list[str] | None) -> tuple[object, dict[str, tuple[bool, str]]]:
    """(the static facts, tweak -> (apply said "already applied", apply's reason))."""
    source = path.read_text(encoding="utf-8")
    static = static_facts_from_source(source, str(path), argv=argv)
    verdicts = {}
    for tweak in _checked_tweaks():
        options = {"batch_size": 64} if tweak == "batch_size" else None
        result = apply_source(source, [tweak], options=options, path=str(path), argv=argv)
        verdicts[tweak] = (tweak in result.already_applied and tweak not in result.turn_on,
                           result.turn_on.get(tweak), result.skipped.get(tweak, ""))
    return static, verdicts


@pytest.mark.parametrize("path, argv", _cases())
def test_analyze_and_apply_agree_on_already_applied(path, argv):
    static, verdicts = _reads(path, argv)
    assert static.parsed, static.note
    for tweak, (already, switch, reason) in verdicts.items():
        facts = TWEAKS[tweak].facts
        on = [f for f in facts if getattr(static, f)]
        assert bool(on) == already, (
            f"{tweak}: analyze's static facts {({f: getattr(static, f) for f in facts})} "
            f"(lines {({f: static.lines.get(f) for f in facts})}) but apply says {reason!r}")
        off = [f for f in facts if f in static.inactive]
        if off and not on:           # the script has it behind a flag this run left off
            switches = [static.switches[f] for f in off if f in static.switches]
            if switches:             # analyze advises that command line; apply answers with it
                assert switch in switches and reason.endswith(f"run the script with `{shlex.join(switch)}`"), (
                    tweak, reason, static.switches)
            else:
                assert switch is None and "not in effect in the run" in reason, (tweak, reason)
        else:
            assert switch is None, (tweak, reason)
        behind = [f for f in on if f in static.behind]
        if already and behind:       # the reason names the flag, as the static fact does
            assert "behind" in reason, (tweak, reason, static.behind)


@pytest.mark.parametrize("name, expected", sorted(EXPECTED.items()))
def test_small_scripts_read_as_written(name, expected):
    argv = AGREEMENT_ARGV.get(name, [[]])[0]
    static = static_facts_from_source((AGREEMENT / name).read_text(encoding="utf-8"), name, argv=argv)
    assert {f: getattr(static, f) for f in expected} == expected, static


def test_every_rule_has_a_small_script():
    """Each fact a codemod checks is on in one small script and off in another."""
    facts = {f for t in _checked_tweaks() for f in TWEAKS[t].facts}
    seen_on = {f for e in EXPECTED.values() for f, v in e.items() if v}
    assert facts - {"fsdp"} <= seen_on


@pytest.mark.parametrize("name, argv, fact, flag", [
    ("autocast_flag.py", ["--dtype", "bfloat16"], "autocast", "--dtype"),
    ("compile_flag.py", ["--compile"], "compile", "--compile"),
    ("config_flag.py", ["--compile=True"], "compile", "--compile"),
    ("grad_scaler_flag.py", ["--amp"], "grad_scaler", "--amp"),
])
def test_flag_on_in_the_run_is_applied(name, argv, fact, flag):
    """The same scripts with the flag set: the fact is on, and says which flag set it."""
    static = static_facts_from_source((AGREEMENT / name).read_text(encoding="utf-8"), name, argv=argv)
    assert getattr(static, fact) is True
    assert flag in static.behind[fact] and "on in this run" in static.behind[fact]


def test_flag_off_says_so_in_both_stages():
    source = (AGREEMENT / "compile_flag.py").read_text(encoding="utf-8")
    static = static_facts_from_source(source, "compile_flag.py", argv=[])
    assert static.compile is False and static.inactive["compile"] == 12
    assert "--compile" in static.behind["compile"] and "off in this run" in static.behind["compile"]
    assert static.switches["compile"] == ["--compile"]
    result = apply_source(source, ["compile"], argv=[])
    assert result.turn_on == {"compile": ["--compile"]} and not result.applied     # present: turn it on
    assert "--compile" in result.skipped["compile"] and "off in this run" in result.skipped["compile"]
    # no run known (`ccprof apply -t compile`): today's answer, saying it is behind the flag
    result = apply_source(source, ["compile"])
    assert result.already_applied == ["compile"]
    assert "behind `if args.compile:`" in result.skipped["compile"]


def test_accumulated_loss_is_not_accumulation():
    """The reproduced disagreement: a logging variable named `accumulated_loss`."""
    source = (AGREEMENT / "accumulation_name_trap.py").read_text(encoding="utf-8")
    assert static_facts_from_source(source).accumulation is False
    result = apply_source(source, ["grad_accumulation"])
    assert result.applied == ["grad_accumulation"], result.skipped


def test_apply_from_advice_reads_the_runs_argv(tmp_path):
    """`ccprof apply --from advice.json` takes the run's argv from the profile.json beside it."""
    import json

    from ccprof.applier.codemods.selection import run_argv

    (tmp_path / "profile.json").write_text(json.dumps({"environment": {"argv": ["--epochs", "3"]}}))
    assert run_argv(tmp_path / "advice.json") == ["--epochs", "3"]
    assert run_argv(tmp_path / "elsewhere" / "advice.json") is None
