"""The Session's watching of where weights come from and of a few torch entry points:
``load_state_dict``/``torch.load``/safetensors/``from_pretrained`` (pretrained or resumed),
call counters (compile, checkpoint) and GradScaler."""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from torch.utils._pytree import tree_flatten


def _storage_key(t: torch.Tensor) -> int | tuple[str, int]:
    """The storage a tensor views: its data pointer, or for a fake tensor (--dry-run: every data
    pointer is 0) the storage object itself."""
    from ccprof.profiler.dryrun import is_fake
    if is_fake(t):
        return ("fake", t.untyped_storage()._cdata)
    return t.untyped_storage().data_ptr()


class LoadWatch:
    """Mixin of ``Session``: weight loads, counted calls, GradScaler (state: ``loads``)."""

    # ------------------------------------------------------------------ misc wrappers
    def _wrap_load(self, orig: Callable) -> Callable:
        """``load_state_dict`` that notes a module receiving weights read from a file (torch.load,
        safetensors): pretrained. A state dict copied from another live model (a DQN target
        network, an EMA copy) is not."""
        session = self

        def load_state_dict(module, state_dict, *args, **kwargs):
            result = orig(module, state_dict, *args, **kwargs)
            try:
                if session._from_file(state_dict):
                    session.loads.loaded.append((type(module).__name__, len(state_dict)))
                    session.loads.loaded_ids.add(id(module))
            except Exception:
                pass
            return result

        load_state_dict.__wrapped__ = orig
        return load_state_dict

    def _note_file_tensors(self, obj: Any) -> None:
        try:
            leaves = tree_flatten(obj)[0] if not isinstance(obj, dict) else list(obj.values())
            for t in leaves:
                if isinstance(t, dict):
                    self._note_file_tensors(t)
                elif isinstance(t, torch.Tensor) and t.device.type != "meta":
                    self.loads.file_storages.add(_storage_key(t))
        except Exception:
            pass

    def _from_file(self, state_dict: Any) -> bool:
        for v in list(getattr(state_dict, "values", lambda: [])())[:64]:
            if isinstance(v, torch.Tensor) and v.device.type != "meta":
                try:
                    if _storage_key(v) in self.loads.file_storages:
                        return True
                except Exception:
                    continue
        return False

    def _wrap_file_load(self, orig: Callable) -> Callable:
        session = self

        def load(*args, **kwargs):
            out = orig(*args, **kwargs)
            session._note_file_tensors(out)
            return out

        load.__wrapped__ = orig
        return load

    def _patch_safetensors(self, module: Any) -> None:
        for name in ("load_file", "load"):
            fn = getattr(module, name, None)
            if fn is not None:
                self._patch(module, name, self._wrap_file_load(fn))

    def _patch_from_pretrained(self, module: Any) -> None:
        """``PreTrainedModel.from_pretrained`` marks the model it returns as pretrained, with the
        checkpoint's name; ``from_config`` and constructors are from scratch."""
        cls = getattr(module, "PreTrainedModel", None)
        raw = cls.__dict__.get("from_pretrained") if cls is not None else None
        if not isinstance(raw, classmethod):
            return
        func = raw.__func__
        session = self

        def from_pretrained(klass, *args, **kwargs):
            model = func(klass, *args, **kwargs)
            try:
                target = model[0] if isinstance(model, tuple) else model
                name = args[0] if args else kwargs.get("pretrained_model_name_or_path", "")
                session.loads.pretrained_models[id(target)] = str(name)
            except Exception:
                pass
            return model

        from_pretrained.__wrapped__ = func
        self._patch(cls, "from_pretrained", classmethod(from_pretrained))

    def _counting(self, counter: str, orig: Callable) -> Callable:
        """``orig`` that counts its calls (torch.compile, checkpoint: facts for static.reconcile)."""
        counters = self.counters

        @functools.wraps(orig)
        def counted(*args, **kwargs):
            counters[counter] += 1
            return orig(*args, **kwargs)

        return counted

    def runtime_facts(self) -> dict[str, bool]:
        """What the run showed of the facts static analysis also reads (static.RUNTIME_FACTS)."""
        classes = {type(m).__name__ for m in self.model.roots.values()}
        model_ckpt = any(getattr(m, "is_gradient_checkpointing", False) for m in self.model.roots.values())
        loaded_hf = any(id(sub) in self.loads.pretrained_models for m in self.model.roots.values() for sub in m.modules())
        return {
            "autocast": self.model.autocast_dtype is not None,
            "grad_scaler": self.model.grad_scaler,
            "checkpointing": self.counters["checkpoint_calls"] > 0 or model_ckpt,
            "accumulation": bool(self.log.micro_batches) and max(self.log.micro_batches) > 1
                            and (self.log.kind == "optimizer"),
            "from_pretrained": loaded_hf,
            "load_state_dict": bool(self.loads.loaded),
            "ddp": "DistributedDataParallel" in classes,
            "fsdp": "FullyShardedDataParallel" in classes or any(
                "FSDP" in c for c in classes),
            "data_parallel": "DataParallel" in classes,
            "compile": self.counters["compile_calls"] > 0 or "OptimizedModule" in classes,
        }

    def _wrap_scale(self, orig: Callable) -> Callable:
        session = self

        def scale(scaler, outputs):
            if scaler.is_enabled():
                session.model.grad_scaler = True
            return orig(scaler, outputs)

        scale.__wrapped__ = orig
        return scale
