"""The Session's assembly of a ``Profile`` from what was recorded (steps, precision, device,
the fvcore cross-check, the whole profile). The steps section is a pure function of the
step clock's record (``step_record.py``); the others still read the Session's live objects
(the model's parameters, the loaders)."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import torch

from ccprof.artefacts.profile import Device, Finding, Precision, Profile, Steps
from ccprof.artefacts.vocab import dtype_name
from ccprof.profiler.host import host_cpu_name, measure_host
from ccprof.profiler.step_record import StepRecord, clean_steps, micro_batches_per_step, steps_section


class ProfileBuilder:
    """Mixin of ``Session``: the Profile sections built from recorded state (reads every record;
    writes only ``host.host_info``, the host figures measured once)."""

    # ------------------------------------------------------------------ results
    def step_record(self) -> StepRecord:
        """What the step clock recorded, as a plain value (``step_record.steps_section`` and the
        data section read it; nothing live)."""
        return StepRecord(
            warmup=self.warmup, step_s=list(self.log.step_s), phase_totals=[dict(d) for d in self.log.phase_totals],
            losses=list(self.log.losses), samples=list(self.log.samples), tokens=list(self.log.tokens),
            backwards=list(self.log.micro_batches), closure_backwards=list(self.log.closure_backwards),
            batches=list(self.log.batches_per_step),
            fed_by_loader=bool(self.data.loaders), loader_workers=int(self.data.loader_info.get("num_workers") or 0),
            after_checkpoint=frozenset(self.log.after_checkpoint), kind=self.log.kind or "optimizer",
            step_cpu_s=list(self.log.step_cpu_s), phase_cpu_totals=[dict(d) for d in self.log.phase_cpu_totals])

    def _clean_steps(self) -> tuple[list[float], list[dict[str, float]]]:
        return clean_steps(self.step_record())

    def _micro_batches(self) -> int:
        return micro_batches_per_step(self.step_record())

    def build_steps(self) -> Steps:
        return steps_section(self.step_record())

    def _host(self, cheap: bool = False) -> Any:
        """Host figures: the speed bench, measured for the final profile after ccprof's hooks are
        off (a checkpoint's figure, with them on, is not kept), and the Python bytecodes each
        phase ran in the python pass (``pycount.PythonPass``)."""
        if cheap:
            host = measure_host(self.measure.module_calls_per_step, repeats=1, windows=1)
        else:
            if self.host.host_info is None:
                # the probe's windows (~0.4 s) only matter when a batch time needs converting
                self.host.host_info = measure_host(self.measure.module_calls_per_step,
                                                   windows=6 if self.data.loaders else 1)
            host = self.host.host_info
        if self.measure.opcodes is not None:
            host = replace(host, opcodes=dict(self.measure.opcodes), opcode_step=self.measure.opcode_step)
        probes = [p for p in self.fetch_probes() + self.host.burst_probes if p > 0]
        if probes and host.probe_s:
            # the machine's own speed: the fastest probe of the run, beside a batch or at the end
            # (a shared core runs in slow spells; contention only slows a probe)
            host = replace(host, probe_s=min(min(probes), host.probe_s))
        return host

    def build_precision(self) -> Precision:
        dtypes: Counter[str] = Counter()
        for m in self._named_roots().values():
            for p in m.parameters():
                dtypes[dtype_name(p.dtype)] += p.numel()
        return Precision(
            autocast=self.model.autocast_dtype is not None, autocast_dtype=self.model.autocast_dtype,
            grad_scaler=self.model.grad_scaler,
            tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
            tf32_cudnn=bool(torch.backends.cudnn.allow_tf32) and self.model.device_type == "cuda",
            float32_matmul_precision=torch.get_float32_matmul_precision(),
            cudnn_allow_tf32=bool(torch.backends.cudnn.allow_tf32),
            param_dtype=dtypes.most_common(1)[0][0] if dtypes else "float32",
        )

    def build_device(self) -> Device:
        if self.model.device_type == "cuda" and torch.cuda.is_available():
            idx = torch.cuda.current_device()
            props = torch.cuda.get_device_properties(idx)
            return Device(type="cuda", name=props.name, memory_bytes=int(props.total_memory),
                          count=torch.cuda.device_count(), capability=f"{props.major}.{props.minor}")

        return Device(type="cpu", name=host_cpu_name(), memory_bytes=None,
                      count=torch.cuda.device_count() if torch.cuda.is_available() else 0)

    def _fvcore_cross_check(self, flops: Any, ops: list | None = None) -> Any:
        """fvcore's jit-traced forward count beside ours (one extra forward, after the run)."""
        from ccprof.profiler.fvcore_check import (
            fvcore_forward_flops,  # here: nothing extra is imported into the user's process before it is needed
        )

        ops = ops or []
        root = self._main_root()
        args, kwargs = self.data.example_input
        was_training = root.training
        try:
            root.eval()      # no BatchNorm statistics updated, no dropout: same FLOPs
            with torch.no_grad():
                count, note = fvcore_forward_flops(root, tuple(args), dict(kwargs))
        except Exception as exc:
            count, note = None, f"fvcore failed: {type(exc).__name__}: {exc}"
        finally:
            root.train(was_training)
        if count and flops.forward:
            from ccprof.hardware.kernels import (
                op_class,  # here: nothing extra is imported into the user's process before it is needed
            )

            # per forward of the model, and without what fvcore does not count (attention, RNNs)
            mb = max(self._micro_batches(), 1)
            unseen = sum(o.flops for o in ops if o.phase == "forward"
                         and op_class(o.op) in ("attention", "rnn"))
            ours = (flops.forward - unseen) / mb
            # only the low side means something: fvcore skips whole layer types (attention, RNNs,
            # custom ops), so counting more than it is normal; counting less than half of what it
            # sees means ccprof's count misses part of the model
            if 0 < ours < 0.5 * count:
                self.findings.append(Finding(
                    "flop_mismatch",
                    f"one forward in the FLOP step counts {ours:.3g} FLOPs, {ours / count:.2g}x fvcore's count "
                    f"for {type(root).__name__} ({count:.3g}): ccprof's FLOP count misses part of the model; "
                    "treat FLOP-based figures (MFU, FLOP-scaled projections) with care"))
        return replace(flops, fvcore_forward=count, fvcore_note=note)

    def build_profile(self, cheap: bool = False, **sections: Any) -> Profile:
        """Everything seen so far as a Profile; ``sections`` override (static, environment...).

        ``cheap`` (a mid-run checkpoint): no fvcore forward, no batch-time probe of the loader
        (both would run the user's model or data again while the run goes on), the host timing
        measured once and reused.
        """
        from ccprof.profiler.flops import FlopPass  # noqa: F401  (import errors surface early)
        from ccprof.profiler.memory import (
            optimizer_section,  # here: nothing extra is imported into the user's process before it is needed
        )
        from ccprof.profiler.model_info import (
            describe_model,  # here: nothing extra is imported into the user's process before it is needed
        )

        named = self._named_roots()
        flops, ops = (self.measure.flops_result if self.measure.flops_result else (None, []))
        memory, act_by_module = (self.measure.memory_result if self.measure.memory_result else (None, {}))
        # every optimizer the script built that holds a trained model's parameters, stepped or not
        # (a GAN's G optimizer may not step in the profiled window: 20 D steps come first; the
        # next layer's optimizer in a layer-by-layer run)
        in_modules = {id(p) for m in named.values() for p in m.parameters()}
        trained = in_modules | {id(p) for o in self.model.optimizers for g in o.param_groups for p in g["params"]}
        opts = list(self.model.optimizers) + [o for o in self.model.known_opts if o not in self.model.optimizers and any(
            id(p) in trained for g in o.param_groups for p in g["params"])]
        # parameters an optimizer trains that no module holds (a bare tensor with requires_grad)
        loose = [p for o in opts for g in o.param_groups for p in g["params"] if id(p) not in in_modules]
        model = describe_model(
            named,
            flops_by_module=flops.by_module if flops else None,
            forward_flops_by_module=self.measure.forward_flops_by_module or None,
            activation_bytes_by_module=act_by_module or None,
            op_bytes_by_module=self.measure.op_bytes_by_module or None,
            loose_params=loose,
        ) if named or loose else None
        # fvcore's check runs the model once more: on fake tensors (a dry run) it would check the
        # same shapes at the cost of another forward of a model that may be 70B parameters
        if (flops is not None and self.data.example_input is not None and len(named) == 1 and not cheap
                and not self.dry_run):
            flops = self._fvcore_cross_check(flops, ops or [])
        reasons: dict[str, str] = dict(sections.pop("reasons", {}) or {})
        reasons.update(self.gpu_reason)
        if self.one_batch_per_iterator():
            n = self.data.loader_info.get("steps_per_epoch")
            reasons.setdefault("steps_per_epoch", (
                f"each training step took one batch from a new iterator of the DataLoader ({n} batches "
                "long): the script's loops, not the loader's length, say how long an epoch is"))
        if self.gpu_info is None:
            reasons.setdefault("gpu", "no GPU samples: the timed steps were not reached")
        if model is not None:
            loaded_ids = self.loads.loaded_ids
            pretrained_from = None
            for m in named.values():
                # weights came from a checkpoint only when from_pretrained built the model: a
                # config read with AutoConfig.from_pretrained(dir) then from_config is from scratch
                hit = next((self.loads.pretrained_models[id(sub)] for sub in m.modules()
                            if id(sub) in self.loads.pretrained_models), None)
                if hit is not None:
                    pretrained_from = f"from_pretrained:{hit}"
                    break
            if pretrained_from is None:
                for m in named.values():
                    if any(id(sub) in loaded_ids for sub in m.modules()):
                        pretrained_from = "load_state_dict"
                        break
            resumed = self.counters["optimizer_state_loads"] > 0 and pretrained_from == "load_state_dict"
            if resumed:
                # weights and optimizer state from a checkpoint: the run continues its own
                # training (llama2.c --init_from=resume), it does not fine-tune someone's model
                pretrained_from = "resume (model and optimizer state from a checkpoint)"
            model = replace(model, pretrained=pretrained_from is not None and not resumed,
                            loaded_from=pretrained_from, resumed=resumed)
        param_names = {id(p): (f"{prefix}.{n}" if prefix and len(named) > 1 else n)
                       for prefix, m in named.items() for n, p in m.named_parameters()}
        opt = optimizer_section(opts, calls=self.model.opt_calls, grad_presence=self.model.grad_presence,
                                names=param_names) if opts else None
        if opt is None:
            reasons.setdefault("optimizer", "no torch.optim optimizer stepped: parameters were "
                                            "updated by hand after backward()" if self.counters["backward_calls"]
                               else "no torch.optim optimizer stepped")
        kwargs: dict[str, Any] = dict(
            device=self.build_device(), steps=self.build_steps(), data=self.build_data(probe=not cheap),
            precision=self.build_precision(), optimizer=opt, ops=ops or [],
            findings=list(self.findings), counters=dict(self.counters), reasons=reasons,
            gpu=self.gpu_info, fusion=dict(self.measure.fusion), kernel_s=dict(self.measure.kernel_result),
            run_limits=list(self.run_limits), eval=self.build_eval(),
            host=self._host(cheap),
            sites=self.site_rec.build(named, self.model.optimizers,
                                      trained=self.counters["optimizer_steps"] + self.counters["backward_calls"] > 0),
        )
        if model is not None:
            kwargs["model"] = model
        if flops is not None:
            kwargs["flops"] = flops
        if memory is not None:
            kwargs["memory"] = memory
        else:
            reasons.setdefault("memory", "the memory step was not reached")
        if flops is None:
            reasons.setdefault("flops", "the FLOP step was not reached")
        kwargs.update(sections)
        return Profile(**kwargs)
