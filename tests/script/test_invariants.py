"""The asserts a batch change must keep (``ccprof.script.invariants``): names derived from the
batch, transitively, the asserts that read them, evaluated with the run's values."""
from __future__ import annotations

import libcst as cst

from ccprof.script.facts import ModuleFacts
from ccprof.script.flags import script_options
from ccprof.script.info import ScriptInfo
from ccprof.script.invariants import asserts_on, dependents
from tests.helpers.paths import SCRIPTS

LLMC = (SCRIPTS / "asserted_batch.py").read_text(encoding="utf-8")


def _info(source: str) -> ScriptInfo:
    return ScriptInfo(ModuleFacts(cst.parse_module(source)))


def test_names_derived_from_the_batch_are_followed_through_tuples_and_products():
    info = _info(LLMC)
    # B from `B, T = args.batch_size, args.sequence_length` (T is not derived), then tokens, then accumulation
    found = dependents(info.module, {"args.batch_size"})
    assert {"B", "tokens_per_fwdbwd", "grad_accum_steps", "loader", "loss"} == found and "T" not in found


def test_the_total_assert_is_evaluated_with_the_run_and_the_new_batch_for_one_process():
    info = _info(LLMC)
    options = script_options(info, ["--batch_size", "4"])
    (inv,) = asserts_on(info, "batch_size", options, 16, dest="batch_size")
    # 128 % (4 x 16 x 1) == 0 in the run; 128 % (16 x 16 x 1) != 0 with the new batch: the next multiple is 256
    assert (inv.line, inv.before, inv.after) == (29, True, False)
    assert (inv.multiple.code, inv.multiple.old, inv.multiple.new, inv.multiple.per_step) == \
        ("args.total_batch_size", 128, 256, 256)


def test_an_assert_on_a_value_not_derived_from_the_batch_is_not_read():
    info = _info(LLMC)
    options = script_options(info, [])
    assert [i.line for i in asserts_on(info, "batch_size", options, 16, dest="batch_size")] == [29]


def test_a_world_size_the_run_does_not_tell_leaves_the_assert_unknown():
    source = LLMC.replace('int(os.environ.get("RANK", -1)) != -1', "torch.distributed.is_initialized()")
    info = _info(source)
    (inv,) = asserts_on(info, "batch_size", script_options(info, []), 16, dest="batch_size")
    assert inv.after is None and inv.multiple is None
