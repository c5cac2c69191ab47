"""The Session's recording of where each knob is (``ccprof.profiler.sites``): the constructors
it wraps (``DataLoader``, ``nn.Module``, argparse's parsing, ``Accelerator``,
``TrainingArguments``; the optimizer's is ``session_eval._wrap_opt_init``) hand the live frames to
the Session's ``SiteRecorder`` (``session.site_rec``), which never raises into the script."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

import torch.nn as nn
from torch.utils.data import dataloader as dl_mod

from ccprof.profiler.sites import ACCELERATOR_SETTINGS, TRAINING_ARGS_SETTINGS


class SiteWatch:
    """Mixin of ``Session``: installs the constructor wrappers that feed ``site_rec``."""

    def _install_sites(self) -> dict[str, Callable[[Any], None]]:
        """Patch what is loaded now; return the patches for modules imported later (by name)."""
        rec = self.site_rec
        self._patch(dl_mod.DataLoader, "__init__",
                    _after_init(dl_mod.DataLoader.__init__, rec.on_loader))
        self._patch(nn.Module, "__init__", _after_init(nn.Module.__init__, rec.on_module))
        self._patch(argparse._ActionsContainer, "add_argument", _then(
            argparse._ActionsContainer.add_argument, lambda _, action, frame: rec.parses.on_add(action, frame)))
        self._patch(argparse.ArgumentParser, "parse_known_args", _then(
            argparse.ArgumentParser.parse_known_args, lambda parser, result, _: rec.parses.on_parse(parser, result[0])))
        return {"accelerate.accelerator": self._patch_accelerator,
                "transformers.training_args": self._patch_training_args}

    def _patch_accelerator(self, module: Any) -> None:
        cls = module.Accelerator
        rec = self.site_rec
        self._patch(cls, "__init__", _after_init(
            cls.__init__, lambda obj, frame: rec.on_object("accelerator", obj, frame, ACCELERATOR_SETTINGS)))

    def _patch_training_args(self, module: Any) -> None:
        # a dataclass: a subclass's generated __init__ does not call TrainingArguments.__init__,
        # but __post_init__ runs for every one of them
        cls = module.TrainingArguments
        rec = self.site_rec
        self._patch(cls, "__post_init__", _after_init(
            cls.__post_init__, lambda obj, frame: rec.on_object("training_args", obj, frame, TRAINING_ARGS_SETTINGS)))


def _after_init(orig: Callable, note: Callable[[Any, Any], None]) -> Callable:
    """``orig`` then ``note(self, the caller's frame)``; the note never raises into the script."""
    return _then(orig, lambda self, result, frame: note(self, frame))


def _then(orig: Callable, note: Callable[[Any, Any, Any], None]) -> Callable:
    """``orig`` then ``note(its first argument, its result, the caller's frame)``; returns ``orig``'s
    result, and the note never raises into the script."""

    def wrapper(first, *args, **kwargs):
        result = orig(first, *args, **kwargs)
        try:
            note(first, result, sys._getframe(1))
        except Exception:
            pass
        return result

    wrapper.__name__ = getattr(orig, "__name__", "wrapper")
    wrapper.__wrapped__ = orig
    return wrapper
