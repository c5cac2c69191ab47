"""bench/data/published_scale.toml: every entry says its configuration, figure, unit and source, and
the loops bench/scale_accuracy.py dry-runs (llama_loop.py on one GPU, titan_fsdp.py for a world of
ranks) rebuild each published model with its exact parameter count (built on the meta device:
shapes only, no subprocess)."""
from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from ccprof.hardware import load_catalog
from tests.helpers.paths import ROOT

spec = importlib.util.spec_from_file_location("scale_accuracy", ROOT / "bench" / "scale_accuracy.py")
scale_accuracy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scale_accuracy)
ENTRIES = scale_accuracy.load_entries()


def test_each_entry_has_its_configuration_figure_unit_and_source():
    assert len(ENTRIES) >= 6 and len({e["id"] for e in ENTRIES}) == len(ENTRIES)
    assert any(e["single_gpu"] and e["projectable"] for e in ENTRIES)
    assert any(not e["single_gpu"] for e in ENTRIES)
    catalog = load_catalog()
    for e in ENTRIES:
        m = e["model"]
        assert all(m[k] > 0 for k in ("layers", "hidden", "intermediate", "heads", "kv_heads", "vocab", "params"))
        assert e["seq_len"] > 0 and e["batch_per_gpu"] > 0 and e["dtype"] and e["optimizer"]
        assert "activation_checkpointing" in e and e["gpu"]["name"] and e["gpu"]["count"] >= 1
        assert e.get("memory") or e.get("tokens_per_s_per_gpu"), e["id"]
        if e.get("memory"):
            assert e["memory"]["unit"] in scale_accuracy.UNIT_BYTES and e["memory"]["kind"]
        src = e["source"]
        assert src["url"].startswith("https://") and src["section"] and src["read"] == "2026-12-07"
        if scale_accuracy.projectable(e):
            assert e["gpu"]["catalog_id"] in catalog and not e.get("why_not"), e["id"]
            if e["single_gpu"]:
                assert e["gpu"]["count"] == 1
            else:   # a world of ranks: its GPUs, its loop, FSDP2's dtypes, where the fields were read
                assert e["world"]["nproc"] * e["world"]["nnodes"] == e["gpu"]["count"], e["id"]
                assert e["script"] in scale_accuracy.SCRIPTS and e["script"] != "llama_loop"
                assert {e["fsdp"]["param_dtype"], e["fsdp"]["reduce_dtype"]} <= {"bf16", "fp32"}
                assert e["config"]["url"].startswith("https://") and e["config"]["fields"]
                if e["activation_checkpointing"] == "selective":
                    assert e["ac_option"] == "op"
                if e["world"]["nnodes"] > 1:
                    assert catalog[e["gpu"]["catalog_id"]].network_bytes_per_s_per_gpu
        else:
            assert e.get("why_not"), e["id"]


def _loop_model(args: list[str]) -> torch.nn.Module:
    """The model llama_loop.py builds from these arguments, on the meta device (its parser, not a copy)."""
    src = (ROOT / "bench" / "scale" / "llama_loop.py").read_text()
    build = src.split("model.train()")[0]  # everything up to the training loop
    scope: dict = {"__name__": "__main__"}
    argv, sys.argv = sys.argv, ["llama_loop.py", *args]
    try:
        with torch.device("meta"):
            exec(compile(build, "llama_loop.py", "exec"), scope)
    finally:
        sys.argv = argv
    return scope["model"]


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e["single_gpu"] and e["projectable"]], ids=lambda e: e["id"])
def test_the_dry_run_loop_rebuilds_the_published_model(entry):
    model = _loop_model(scale_accuracy.script_args(entry))
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # LoRA adds rank x (in + out) per targeted linear; the base count is the published one
    assert params - trainable == entry["model"]["params"]
    # the frozen base in bf16 (peft leaves meta-device adapters in the default dtype; on fake tensors
    # autocast_adapter_dtype=False keeps them bf16 too)
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {torch.bfloat16}
    if entry["id"].startswith("litgpt-llama2-7b"):
        assert trainable == 4_194_304  # LitGPT's table: 32 layers x (q, v) x 8 x (4096 + 4096)
    if entry["id"].startswith("litgpt-phi1.5"):
        assert trainable == 1_572_864  # LitGPT's table: 24 x 2 x 8 x (2048 + 2048)
    assert entry["method"] == "lora" and trainable > 0


def _titan_model(args: list[str]) -> torch.nn.Module:
    """The model titan_fsdp.py builds from these arguments, on the meta device, before any process
    group or sharding (its parser and classes, not a copy)."""
    src = (ROOT / "bench" / "scale" / "titan_fsdp.py").read_text()
    build = src.split("dist.init_process_group(")[0]   # the arguments, the model and the AC policy
    scope: dict = {"__name__": "__main__"}
    argv, sys.argv = sys.argv, ["titan_fsdp.py", *args]
    try:
        exec(compile(build, "titan_fsdp.py", "exec"), scope)
        with torch.device("meta"):
            return scope["Transformer"]()
    finally:
        sys.argv = argv


@pytest.mark.parametrize("entry", [e for e in ENTRIES if scale_accuracy.projectable(e) and not e["single_gpu"]],
                         ids=lambda e: e["id"])
def test_the_world_loop_rebuilds_the_published_model_and_its_wrapping(entry):
    args = scale_accuracy.script_args(entry)
    model = _titan_model(args)
    assert sum(p.numel() for p in model.parameters()) == entry["model"]["params"]
    ac = {"full": "full", "selective": "selective-op", False: "none"}[entry["activation_checkpointing"]]
    assert args[args.index("--ac") + 1] == ac
    assert args[args.index("--batch") + 1] == str(entry["batch_per_gpu"])
    assert args[args.index("--seq") + 1] == str(entry["seq_len"])
    # the RMSNorm the row's torchtitan ran then: its Triton kernel (stood in by nn.RMSNorm's fused CUDA
    # path) or its Python class with the fp32 upcast
    norms = [type(m) for m in model.modules() if type(m).__name__ == "RMSNorm"]
    fused = entry.get("norm_type", {}).get("value") == "fused_rmsnorm"
    assert len(norms) == 2 * entry["model"]["layers"] + 1
    assert {t is torch.nn.RMSNorm for t in norms} == {fused}


def test_a_compiled_row_shares_its_eager_twins_trace():
    by_id = {e["id"]: e for e in ENTRIES}
    eager, compiled = by_id["torchtitan-llama3.1-8b-fsdp-8xh100"], by_id["torchtitan-llama3.1-8b-fsdp-compile-8xh100"]
    assert scale_accuracy.run_key(eager) == scale_accuracy.run_key(compiled)
    assert compiled["policy"]["compiled"] and not eager.get("policy")


def test_the_rows_not_projected_print_why_and_no_numbers(capsys):
    # neither row runs a dry run, so main() returns at once
    assert scale_accuracy.main(["--only", "torchtune-llama3.1-70b-full-8xa100", "torchtune-llama3.1-8b-full-4090"]) == 0
    out, err = capsys.readouterr()
    assert "CPU offload" in out and "PagedAdamW8bit" in out
    assert "dry-running" not in err and "median" not in out


def test_each_titan_row_says_the_allocator_settings_its_launcher_set():
    # torchtitan's run_llama_train.sh set expandable_segments:True from 2024-10-22 (a5e57e4): the Dec 2024
    # H100 benchmark rows ran under it, the April 2024 A100 rows did not
    titan = [e for e in ENTRIES if e.get("script") == "titan_fsdp"]
    assert titan
    for e in titan:
        conf = e["alloc_conf"]
        assert conf["value"] in ("", "expandable_segments:True") and "run_llama_train.sh" in conf["source"], e["id"]
        assert (conf["value"] != "") == ("h100_202412" in e["source"]["url"]), e["id"]
        assert scale_accuracy.alloc_conf(e) == conf["value"]
        assert scale_accuracy.alloc_conf(e, "expandable_segments:True") == "expandable_segments:True"
    # a what-if under other settings is another dry run, not the published row's trace
    e = titan[0]
    assert scale_accuracy.run_key(e) != scale_accuracy.run_key(e, "max_split_size_mb:64")
