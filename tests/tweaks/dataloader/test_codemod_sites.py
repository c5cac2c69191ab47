"""The dataloader codemod with the run's sites: workers, pinned memory and persistent workers on
the loader that fed training, each where the run took it from; what the loader leaves to its
default in another file is named with that file and line. Sites built by hand as the profiler
records them."""
from __future__ import annotations

import textwrap

from ccprof.applier.codemods import apply_source
from ccprof.artefacts.profile import CallSite, Setting

LOADER = "torch.utils.data.dataloader.DataLoader"


def _apply(source: str, sites, argv=None, path="train.py", **options):
    return apply_source(textwrap.dedent(source), ["dataloader"], options=options, sites=sites, argv=argv, path=path)


MINGPT = """\
import sys

from torch.utils.data.dataloader import DataLoader

from mingpt.trainer import Trainer

if __name__ == '__main__':
    config = get_config()
    config.merge_from_args(sys.argv[1:])
    trainer = Trainer(config.trainer, model, train_dataset)

    def eval_split(trainer, split):
        loader = DataLoader(dataset, batch_size=100, num_workers=0, drop_last=False)

    trainer.run()
"""


def _mingpt(workers_argv: str) -> list[CallSite]:
    """minGPT's adder: training loader in mingpt/trainer.py:68 with `pin_memory=True`,
    `num_workers=config.num_workers` (the script's config.trainer), no persistent_workers."""
    workers = Setting("num_workers", 0, "config.num_workers", "attribute", "config.trainer.num_workers",
                      "mingpt/trainer.py", 21, "--trainer.num_workers" if workers_argv else "", 4, workers_argv,
                      "adder.py", 15, "<module>")
    pin = Setting("pin_memory", True, "True", "literal", "", "mingpt/trainer.py", 68)
    persistent = Setting("persistent_workers", False, "", "default", "", "mingpt/trainer.py", 68)
    stack = [["mingpt/trainer.py", 68, "run"], ["adder.py", 15, "<module>"]]
    return [CallSite("dataloader", LOADER, "mingpt/trainer.py", 68, "run", stack, "train", "train_loader",
                     [workers, pin, persistent]),
            CallSite("dataloader", LOADER, "adder.py", 13, "eval_split", [], "eval", "loader", [])]


def test_workers_from_a_config_field_on_the_command_line_are_set_there_and_the_rest_named_where_it_is():
    # adder: `--trainer.num_workers=0`; the evaluation loader in the script is left alone
    result = _apply(MINGPT, _mingpt("--trainer.num_workers=0"), ["--trainer.batch_size=16", "--trainer.num_workers=0"],
                    path="adder.py", num_workers=4)
    assert result.source == textwrap.dedent(MINGPT) and result.already_applied == ["dataloader"]
    assert result.turn_on["dataloader"] == ["--trainer.batch_size=16", "--trainer.num_workers=4"]
    # (guarded: the count is read from a variable another run may set to 0, and persistent workers need some)
    assert ("persistent_workers: the training DataLoader at mingpt/trainer.py:68 has no setting for "
            "persistent_workers; add persistent_workers=config.num_workers > 0 there") in result.skipped["dataloader"]


def test_workers_from_a_config_field_the_run_did_not_set_are_assigned_before_the_line_that_built_it():
    result = _apply(MINGPT, _mingpt(""), [], path="adder.py", num_workers=4)
    assert "        loader = DataLoader(dataset, batch_size=100, num_workers=0, drop_last=False)\n\n" \
        "    config.trainer.num_workers = 4\n    trainer.run()\n" in result.source, result.source
    assert result.applied == ["dataloader"]


def test_the_training_loaders_literals_in_the_script_not_the_evaluation_loaders():
    source = """\
        from torch.utils.data import DataLoader

        val = DataLoader(val_ds, batch_size=100, num_workers=0)
        train = DataLoader(train_ds, batch_size=8, shuffle=True, num_workers=0)
        """
    workers = Setting("num_workers", 0, "0", "literal", "", "train.py", 4)
    site = CallSite("dataloader", LOADER, "train.py", 4, "<module>", [], "train", "train", [workers])
    result = _apply(source, [site], [], num_workers=2)
    assert "val = DataLoader(val_ds, batch_size=100, num_workers=0)\n" in result.source
    assert "train = DataLoader(train_ds, batch_size=8, shuffle=True, num_workers=2, pin_memory=True, " \
        "persistent_workers=True)\n" in result.source


def test_workers_written_in_another_file_are_refused_with_its_file_and_line():
    workers = Setting("num_workers", 0, "0", "literal", "", "data.py", 7)
    site = CallSite("dataloader", LOADER, "data.py", 7, "get_dataloader", [["data.py", 7, "get_dataloader"],
                                                                          ["train.py", 3, "<module>"]], "train")
    source = "from data import get_dataloader\n\nloader = get_dataloader(ds)\n"
    result = _apply(source, [site.__class__(**{**site.__dict__, "settings": [workers]})], [], num_workers=4)
    assert result.applied == [] and result.source == source
    assert result.skipped["dataloader"] == ("num_workers: the training DataLoader is built at data.py:7 with "
                                            "`num_workers=0`: set it to 4 there, ccprof rewrites only the script")


def test_a_file_outside_the_scripts_folder_is_named_relative_to_it(tmp_path):
    # the profiler records files outside the script's folder as absolute paths (minGPT's package, two levels up)
    script = tmp_path / "projects" / "adder" / "adder.py"
    trainer = tmp_path / "mingpt" / "trainer.py"
    workers = Setting("num_workers", 0, "0", "literal", "", str(trainer), 74)
    site = CallSite("dataloader", LOADER, str(trainer), 68, "run", [], "train", "train_loader", [workers])
    result = _apply("import torch\n", [site], [], path=str(script), num_workers=4)
    assert result.skipped["dataloader"].startswith(
        "num_workers: the training DataLoader is built at ../../mingpt/trainer.py:74 with `num_workers=0`")
