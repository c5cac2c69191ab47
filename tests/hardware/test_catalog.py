"""The built-in catalog's sanity (sources, dates, dense peaks) and user overrides."""
from __future__ import annotations

import datetime as dt
import json
import os
import re

import pytest
from click.testing import CliRunner

from ccprof.cli import cli
from ccprof.hardware import CatalogError, catalog_rows, load_catalog, match_device, resolve_gpu
from ccprof.hardware.catalog import DTYPE_KEYS

T = 1e12

REQUIRED = {"a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h200", "l4", "l40s", "a10g",
            "t4", "v100-16gb", "rtx-4090", "mi300x"}


@pytest.fixture(scope="module")
def cat():
    return load_catalog(user=False)


def test_catalog_covers_what_users_rent(cat):
    assert REQUIRED <= set(cat) and len(cat) >= 12
    assert any(s.vendor != "nvidia" for s in cat.values())


def test_every_entry_has_sources_dates_and_numbers(cat):
    for gid, s in cat.items():
        assert s.spec_source and s.price_source, gid
        assert re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", s.price_date), (gid, s.price_date)
        assert s.usd_per_hour and s.usd_per_hour > 0, gid
        assert s.memory_bytes > 0 and s.bandwidth_bytes_per_s > 0 and s.interconnect, gid
        assert "fp32" in s.peak_flops and set(s.peak_flops) <= set(DTYPE_KEYS), gid
        assert s.match, gid


def test_dense_datasheet_figures_from_facts(cat):
    # FACTS.md: dense peaks, TFLOP/s
    assert cat["a100-80gb"].peak_flops == {"fp32": 19.5 * T, "tf32": 156 * T, "bf16": 312 * T, "fp16": 312 * T}
    assert cat["a100-40gb"].bandwidth_bytes_per_s == 1555e9 and cat["a100-80gb"].bandwidth_bytes_per_s == 2039e9
    assert cat["h100-sxm"].peak_flops["bf16"] == 989.5 * T and cat["h100-sxm"].peak_flops["fp32"] == 67 * T
    assert cat["h100-pcie"].peak_flops["bf16"] == 756 * T
    assert cat["h200"].memory_bytes == 141 * 10**9 and cat["h200"].bandwidth_bytes_per_s == 4800e9
    assert cat["t4"].peak_flops == {"fp32": 8.1 * T, "fp16": 65 * T}          # no bf16, no tf32
    assert cat["v100-16gb"].peak_flops == {"fp32": 15.7 * T, "fp16": 125 * T}


def test_no_sparse_peaks(cat):
    # the 2:4-sparse datasheet figures are exactly double the dense ones
    sparse_bf16 = {"h100-sxm": 1979, "h100-pcie": 1513, "h200": 1979, "l4": 242, "l40s": 733,
                   "a100-80gb": 624, "mi300x": 2614.9}
    for gid, sparse in sparse_bf16.items():
        assert cat[gid].peak_flops["bf16"] < 0.6 * sparse * T, gid
    # dense ratios hold on every part: tf32 = bf16/2 where TF32 is faster than fp32, fp8 = 2*bf16
    for gid, s in cat.items():
        p = s.peak_flops
        if "tf32" in p and "bf16" in p:
            assert p["tf32"] == pytest.approx(p["bf16"] / 2, rel=0.03), gid
        if "fp8" in p:
            assert p["fp8"] == pytest.approx(2 * p["bf16"], rel=0.03), gid


def test_facts_prices(cat):
    assert cat["a100-40gb"].usd_per_hour == 2.74 and cat["a100-80gb"].usd_per_hour == 3.43
    assert cat["h100-sxm"].usd_per_hour == 6.88 and cat["a10g"].usd_per_hour == 1.01
    assert cat["l4"].usd_per_hour == 0.80 and cat["t4"].usd_per_hour == 0.53


def test_nodes_and_their_network_per_gpu(cat):
    # the cloud node the price comes from, its network / its GPUs, one direction (Gbit/s -> bytes/s)
    gbit = {"a100-40gb": 50, "a100-80gb": 50, "h100-sxm": 400, "h200": 400, "l40s": 50, "a10g": 12.5,
            "l4": 12.5, "t4": 12.5, "v100-16gb": 3.125, "mi300x": 400}     # p4d 400/8, p5 3200/8, g5 100/8, ...
    for gid, s in cat.items():
        if gid in gbit:
            assert s.network_bytes_per_s_per_gpu == gbit[gid] * 1e9 / 8, gid
            assert s.gpus_per_node == 8 and s.network and s.network_source, gid
        else:  # planned on one node only, and the entry says why
            assert s.network_bytes_per_s_per_gpu is None and "No network figure" in s.notes, gid
    assert set(cat) - set(gbit) == {"h100-pcie", "rtx-4090"}
    row = next(r for r in catalog_rows(cat) if r["id"] == "h100-sxm")
    assert row["network_gbit_s_per_gpu"] == 400 and row["gpus_per_node"] == 8 and "3,200 Gbps" in row["network"]


def test_user_gives_a_gpu_a_network(tmp_path, cat):
    f = tmp_path / "mine.toml"
    f.write_text('[gpu.h100-pcie]\ngpus_per_node = 4\nnetwork_gbit_s_per_gpu = 200\n'
                 'network = "our cluster: 4 x 200 Gb/s HDR"\nnetwork_source = "our spec sheet"\n')
    h = load_catalog(f, user=False)["h100-pcie"]
    assert h.gpus_per_node == 4 and h.network_bytes_per_s_per_gpu == 25e9 and h.network_source == "our spec sheet"
    assert h.peak_flops == cat["h100-pcie"].peak_flops


def test_user_price_override_keeps_everything_else(tmp_path, cat):
    f = tmp_path / "mine.toml"
    f.write_text('[gpu.h100-sxm]\nusd_per_hour = 2.49\n')
    mine = load_catalog(f, user=False)
    h = mine["h100-sxm"]
    assert h.usd_per_hour == 2.49
    assert h.price_source == f"user catalog {f}"
    assert h.price_date == dt.date.fromtimestamp(os.path.getmtime(f)).isoformat()
    assert h.peak_flops == cat["h100-sxm"].peak_flops and h.memory_bytes == cat["h100-sxm"].memory_bytes
    assert mine["l4"] == cat["l4"]


def test_user_adds_a_gpu_and_partial_tflops_merge(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('''
[gpu.rtx-a6000]
name = "NVIDIA RTX A6000"
memory_gb = 48
bandwidth_gb_s = 768
tflops = { fp32 = 38.7, bf16 = 154.8 }
match = ['RTX A6000']
usd_per_hour = 0.8
price_source = "our lab"
price_date = "2026-12-01"

[gpu.a10g]
tflops = { bf16 = 70 }
''')
    mine = load_catalog(f, user=False)
    a6 = mine["rtx-a6000"]
    assert a6.memory_bytes == 48 * 10**9 and a6.peak_flops == {"fp32": 38.7 * T, "bf16": 154.8 * T}
    assert a6.price_source == "our lab" and a6.origin == str(f)
    assert match_device("NVIDIA RTX A6000", mine) == "rtx-a6000"
    assert mine["a10g"].peak_flops["bf16"] == 70 * T and mine["a10g"].peak_flops["fp32"] == 31.2 * T


@pytest.mark.parametrize("text, message", [
    ('[gpu.new]\nname = "x"\n', "lacks memory_gb, bandwidth_gb_s, tflops.fp32"),
    ('[gpu.t4]\nspeed = 3\n', "unknown keys"),
    ('[gpu.t4]\ntflops = { int4 = 3 }\n', "unknown dtypes"),
    ('[gpu.t4]\nusd_per_hour = -1\n', "positive number"),
    ('[gpu.t4\n', "not valid TOML"),
    ('[gpu.t4]\ngpus_per_node = 2.5\n', "gpus_per_node must be a whole number"),
    ('[gpu.t4]\nnetwork_gbit_s_per_gpu = 0\n', "network_gbit_s_per_gpu must be a positive number"),
])
def test_bad_user_catalogs_say_what_to_fix(tmp_path, text, message):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(CatalogError, match=re.escape(message)):
        load_catalog(f, user=False)


def test_per_user_catalog_locations(tmp_path, monkeypatch):
    f = tmp_path / "env.toml"
    f.write_text('[gpu.t4]\nusd_per_hour = 0.35\n')
    monkeypatch.setenv("CCPROF_CATALOG", str(f))
    assert load_catalog()["t4"].usd_per_hour == 0.35
    monkeypatch.delenv("CCPROF_CATALOG")
    cfg = tmp_path / "xdg" / "ccprof"
    cfg.mkdir(parents=True)
    (cfg / "catalog.toml").write_text('[gpu.t4]\nusd_per_hour = 0.40\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert load_catalog()["t4"].usd_per_hour == 0.40
    # --catalog wins over the per-user file
    f2 = tmp_path / "cli.toml"
    f2.write_text('[gpu.t4]\nusd_per_hour = 0.45\n')
    assert load_catalog(f2)["t4"].usd_per_hour == 0.45


def test_resolve_and_match_names(cat):
    assert resolve_gpu("H100_SXM", cat) == "h100-sxm"
    assert resolve_gpu("h200", cat) == "h200"
    assert resolve_gpu("NVIDIA L40S", cat) == "l40s"
    with pytest.raises(ValueError, match="be more specific"):
        resolve_gpu("a100", cat)
    assert match_device("NVIDIA A100-SXM4-40GB", cat) == "a100-40gb"
    assert match_device("NVIDIA L4", cat) == "l4"                   # not l40s
    assert match_device("Tesla T4", cat) == "t4"
    assert match_device("AMD Instinct MI300X", cat) == "mi300x"
    assert match_device("NVIDIA RTX A6000", cat) is None


def test_cli_gpus_json_and_table(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["gpus", "--json"], env={"CCPROF_CATALOG": ""})
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert {r["id"] for r in rows} >= REQUIRED
    h = next(r for r in rows if r["id"] == "h100-sxm")
    assert h["tflops"]["bf16"] == 989.5 and h["price_date"] == "2026-11-09" and h["price_source"]
    f = tmp_path / "mine.toml"
    f.write_text('[gpu.t4]\nusd_per_hour = 0.35\nprice_source = "spot"\nprice_date = "2026-12-01"\n')
    res = runner.invoke(cli, ["gpus", "--catalog", str(f)], env={"COLUMNS": "250", "CCPROF_CATALOG": ""})
    assert res.exit_code == 0, res.output
    assert "h100-sxm" in res.output and "0.35" in res.output and "2026-12-01" in res.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[gpu.t4\n")
    res = runner.invoke(cli, ["gpus", "--catalog", str(bad)], env={"CCPROF_CATALOG": ""})
    assert res.exit_code == 2 and "not valid TOML" in res.output
