"""Where each knob is (``ccprof.profiler.sites``, ``Profile.sites``): the call that built the loader,
the optimizer and the models, and where each value came from.

The first tests resolve values in this process with the wrappers the Session installs (live
frames, real DataLoaders); the ``e2e`` ones run the small project in tests/scripts/sites/ (a script
plus ``data.py``, ``trainer.py``, ``cfgnode.py``) through the harness as ``analyze`` does.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import sys

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ccprof.profiler.runner import run_script
from ccprof.profiler.session_sites import SiteWatch, _after_init
from ccprof.profiler.sites import SiteRecorder, argv_for_option, argv_for_path
from tests.helpers.paths import SCRIPTS

SITES = SCRIPTS / "sites"


class _Sites(SiteWatch):
    """The Session's site wrappers alone (``SiteWatch``), undone on exit."""

    def __init__(self) -> None:
        self.site_rec = SiteRecorder(__file__)
        self.patched: list[tuple] = []

    def _patch(self, owner, name, new) -> None:
        self.patched.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, new)


@contextlib.contextmanager
def recording(argv: list[str], *later: str):
    """The Session's wrappers of DataLoader.__init__, nn.Module.__init__ and argparse around a
    SiteRecorder (and of the modules named in ``later``), with ``argv`` as the run's arguments."""
    watch, old_argv = _Sites(), sys.argv
    patches = watch._install_sites()
    # the optimizer's wrapper is session_eval's; here only its site note
    watch._patch(torch.optim.Optimizer, "__init__", _after_init(torch.optim.Optimizer.__init__, watch.site_rec.on_optimizer))
    for name in later:
        patches[name](importlib.import_module(name))
    sys.argv = ["train.py", *argv]
    try:
        yield watch.site_rec
    finally:
        sys.argv = old_argv
        for owner, name, orig in reversed(watch.patched):
            setattr(owner, name, orig)


def _dataset(n: int = 32) -> TensorDataset:
    return TensorDataset(torch.randn(n, 4))


def get_loader(ds, batch_size, workers=0):
    return DataLoader(ds, batch_size=batch_size, num_workers=workers)


def _setting(site, name):
    return next(s for s in site.settings if s.name == name)


def test_a_value_passed_through_a_helper_is_found_at_the_callers_dict_path():
    cfg = {"train": {"bs": 12}}
    with recording([]) as rec:
        loader = get_loader(_dataset(), cfg["train"]["bs"])
    (site,) = rec.build({}, [], trained=False)
    assert (site.what, site.function, site.name) == ("dataloader", "get_loader", "")
    assert [f[2] for f in site.stack] == ["get_loader", "test_a_value_passed_through_a_helper_is_found_at_the_callers_dict_path"]
    bs = _setting(site, "batch_size")
    assert (bs.value, bs.code, bs.kind, bs.path) == (12, "batch_size", "attribute", "cfg['train']['bs']")
    assert bs.scope_function == "test_a_value_passed_through_a_helper_is_found_at_the_callers_dict_path"
    assert bs.scope_file == "test_sites.py" and site.file == "test_sites.py"    # relative to the script's folder
    # the helper's own default, written at its def
    workers = _setting(site, "num_workers")
    assert (workers.value, workers.kind, workers.line) == (0, "literal", get_loader.__code__.co_firstlineno)
    assert _setting(site, "pin_memory").kind == "default"
    assert loader.batch_size == 12


def test_an_argparse_option_gives_its_flag_default_and_the_argument_that_set_it():
    with recording(["--workers", "2", "--bs=6"]) as rec:
        parser = argparse.ArgumentParser()
        add_line = sys._getframe().f_lineno + 1
        parser.add_argument("-b", "--bs", dest="batch_size", type=int, default=16)
        parser.add_argument("--workers", type=int, default=0)
        args = parser.parse_args()
        train_loader = DataLoader(_dataset(), batch_size=args.batch_size, num_workers=0, pin_memory=False)
        assert train_loader.batch_size == 6
    (site,) = rec.build({}, [], trained=False)
    assert site.name == "train_loader"
    bs = _setting(site, "batch_size")
    assert (bs.kind, bs.path, bs.flag, bs.default, bs.argv, bs.line) == (
        "argparse", "args.batch_size", "--bs", 16, "--bs=6", add_line)
    assert (_setting(site, "num_workers").kind, _setting(site, "pin_memory").code) == ("literal", "False")


def test_a_value_the_call_computes_is_found_by_its_name_and_value():
    class Config:      # a plain object: its __dict__ is read, nothing of it runs
        def __init__(self):
            self.train_batch_size = 10

    config = Config()
    with recording([]) as rec:
        DataLoader(_dataset(), batch_size=int(config.train_batch_size))
    bs = _setting(rec.build({}, [], trained=False)[0], "batch_size")
    assert (bs.code, bs.kind, bs.path) == ("int(config.train_batch_size)", "attribute", "config.train_batch_size")


def test_a_loader_made_every_epoch_is_one_site_counted():
    ds = _dataset()
    with recording([]) as rec:
        for _ in range(3):
            get_loader(ds, 4)
    (site,) = rec.build({}, [], trained=False)
    assert site.count == 3


def test_training_arguments_from_the_command_line(tmp_path):
    from transformers import TrainingArguments

    with recording(["--per_device_train_batch_size", "4"], "transformers.training_args") as rec:
        parser = argparse.ArgumentParser()
        parser.add_argument("--per_device_train_batch_size", type=int, default=8)
        args = parser.parse_args()
        training_args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=args.per_device_train_batch_size,
                                          gradient_accumulation_steps=2, report_to=[])
    (site,) = rec.build({}, [], trained=True)
    assert (site.what, site.name, site.role) == ("training_args", "training_args", "train")
    bs = _setting(site, "per_device_train_batch_size")
    assert (bs.value, bs.kind, bs.path, bs.argv) == (4, "argparse", "args.per_device_train_batch_size",
                                                      "--per_device_train_batch_size 4")
    accum = _setting(site, "gradient_accumulation_steps")
    assert (accum.value, accum.kind, accum.code) == (2, "literal", "2")
    assert _setting(site, "bf16").kind == "default"
    assert training_args.per_device_train_batch_size == 4


def batches(batch_size, num_workers=0):
    loader = DataLoader(_dataset(), batch_size=batch_size, num_workers=num_workers)
    yield from loader


def test_a_generators_parameter_is_found_by_name_where_it_was_set():
    # llama2.c: iter_batches = partial(Task.iter_batches, batch_size=batch_size); next(iter_batches(...))
    batch_size = 6
    it = functools.partial(batches, batch_size=batch_size)()
    with recording([]) as rec:
        next(it)
    (site,) = rec.build({}, [], trained=False)
    bs = _setting(site, "batch_size")
    assert (bs.code, bs.kind, bs.path, bs.value) == ("batch_size", "local", "batch_size", 6)
    assert bs.scope_function == "test_a_generators_parameter_is_found_by_name_where_it_was_set"


def test_an_option_passed_in_a_mapping():
    # nanoGPT's configure_optimizers: extra_args = dict(fused=True) if use_fused else dict()
    params = [torch.nn.Parameter(torch.zeros(2))]
    with recording([]) as rec:
        extra_args = dict(foreach=False)
        torch.optim.AdamW(params, lr=1e-3, **extra_args)
    (site,) = rec.build({}, [], trained=False)
    foreach, fused = _setting(site, "foreach"), _setting(site, "fused")
    assert (foreach.code, foreach.kind, foreach.path, foreach.value) == (
        "**extra_args", "attribute", "extra_args['foreach']", False)
    assert (fused.kind, fused.value) == ("default", None)


def test_arguments_that_set_a_path():
    # nanoGPT's configurator (a module global) and minGPT's merge_from_args (the path's tail)
    assert argv_for_path(["--batch_size=4"], (("name", "batch_size"),), 4) == "--batch_size=4"
    path = (("name", "config"), ("attr", "trainer"), ("attr", "batch_size"))
    assert argv_for_path(["--model.n_layer=2", "--trainer.batch_size=16"], path, 16) == "--trainer.batch_size=16"
    assert argv_for_path(["--trainer.batch_size=16"], path, 8) == ""          # not the run's value
    assert argv_for_path(["--data.batch_size=16"], path, 16) == ""            # another node's
    assert argv_for_option(["--amp", "--bs", "4"], ["-b", "--bs"]) == ("--bs 4", "--bs")
    assert argv_for_option(["--amp"], ["--amp"], takes_value=False) == ("--amp", "--amp")


# ----------------------------------------------------------------- through the harness (e2e)
def _sites(script: str, args: list[str]):
    r = run_script(SITES / script, args, steps=3, warmup=1, timeout_s=180)
    assert r.exit_code == 0, r.message
    return r.profile.sites


def _one(sites, what, role=None, **match):
    hits = [s for s in sites if s.what == what and (role is None or s.role == role)
            and all(getattr(s, k) == v for k, v in match.items())]
    assert len(hits) == 1, (what, role, match, sites)
    return hits[0]


@pytest.mark.e2e
def test_argparse_option_an_eval_loader_and_a_forward_in_a_helper():
    sites = _sites("with_argparse.py", ["--bs", "8"])
    train = _one(sites, "dataloader", "train")
    assert (train.file, train.function, train.stack[-1][:2]) == ("data.py", "get_dataloader", ["with_argparse.py", 17])
    bs = _setting(train, "batch_size")
    assert (bs.value, bs.code, bs.kind, bs.path) == (8, "batch_size", "argparse", "args.batch_size")
    assert (bs.flag, bs.default, bs.argv, bs.file, bs.line) == ("--bs", 16, "--bs 8", "with_argparse.py", 12)
    assert (bs.scope_file, bs.scope_line, bs.scope_function) == ("with_argparse.py", 17, "<module>")
    val = _one(sites, "dataloader", "eval")
    assert (val.name, val.line) == ("val_loader", 18)
    assert (_setting(val, "batch_size").kind, _setting(val, "batch_size").value) == ("literal", 32)
    model = _one(sites, "model")
    assert (model.name, model.line, model.role) == ("model", 19, "train")
    fwd = _one(sites, "forward", "train")
    assert (fwd.function, fwd.line, fwd.name, fwd.count) == ("train_iter", 24, "net", 10)   # 1 + 3 passes + 3 + 3
    assert _one(sites, "forward", "eval").line == 37
    opt = _one(sites, "optimizer", "train")
    assert (opt.name, _setting(opt, "lr").kind, _setting(opt, "lr").value) == ("optimizer", "literal", 0.05)


@pytest.mark.e2e
def test_a_module_global_overridden_nanogpt_style_and_a_gans_two_models():
    sites = _sites("with_globals.py", ["--batch_size=4"])
    bs = _setting(_one(sites, "dataloader", "train"), "batch_size")
    assert (bs.value, bs.kind, bs.path, bs.file, bs.line, bs.default) == (4, "global", "batch_size", "with_globals.py", 9, 8)
    assert (bs.argv, bs.flag) == ("--batch_size=4", "--batch_size")
    assert sorted((s.name, s.line) for s in sites if s.what == "model") == [("D", 16), ("G", 15)]
    assert sorted(s.name for s in sites if s.what == "optimizer" and s.role == "train") == ["opt_d", "opt_g"]
    assert {s.name for s in sites if s.what == "forward"} == {"G", "D"}


@pytest.mark.e2e
def test_a_config_object_read_in_another_module_is_reported_as_the_script_sees_it():
    sites = _sites("with_config.py", ["--trainer.batch_size=16"])
    loader = _one(sites, "dataloader", "train")
    assert (loader.file, loader.function, loader.name) == ("trainer.py", "run", "train_loader")
    bs = _setting(loader, "batch_size")
    assert (bs.code, bs.kind, bs.path, bs.value) == ("config.batch_size", "attribute", "config.trainer.batch_size", 16)
    assert (bs.argv, bs.flag) == ("--trainer.batch_size=16", "--trainer.batch_size")
    assert (bs.file, bs.line, bs.default) == ("trainer.py", 14, 64)      # C.batch_size = 64
    # where a rewrite sets it: just before the script's trainer.run()
    assert (bs.scope_file, bs.scope_line, bs.scope_function) == ("with_config.py", 24, "<module>")
    lr = _setting(_one(sites, "optimizer", "train"), "lr")
    assert (lr.path, lr.file, lr.line, lr.default) == ("config.trainer.learning_rate", "with_config.py", 15, 1e-3)
    assert _one(sites, "forward", "train").file == "trainer.py"


@pytest.mark.e2e
def test_accelerate_the_users_loader_trains_and_the_accelerator_is_recorded():
    r = run_script(SCRIPTS / "accelerate_loop.py", [], steps=3, warmup=1, timeout_s=180)
    assert r.exit_code == 0, r.message
    sites = r.profile.sites
    train = _one(sites, "dataloader", "train")       # not the copy accelerator.prepare() made
    assert (train.name, train.line, _setting(train, "batch_size").kind) == ("train_loader", 16, "literal")
    acc = _one(sites, "accelerator")
    assert (acc.name, acc.line) == ("accelerator", 13)
    assert (_setting(acc, "mixed_precision").value, _setting(acc, "mixed_precision").kind) == ("no", "default")
    assert _setting(acc, "gradient_accumulation_steps").value == 1
