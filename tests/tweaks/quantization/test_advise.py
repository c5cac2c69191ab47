from dataclasses import replace

from ccprof.advisors import AdviceContext, advise_one
from tests.helpers.profiles import hand_profile, llama_plain


def test_formula_frozen_linear_in_nf4():
    p = hand_profile()
    p = replace(p, model=replace(p.model, trainable_params=1_000_000))
    # 80M frozen Linear params x (4 - 4.127/8) bytes; memory only: no dollars on an 80 GB A100 ...
    roomy = advise_one("quantization", p)
    assert roomy.status == "no_saving" and "which this run does not need" in roomy.rationale
    assert roomy.details["no_saving"]["memory_saved_bytes"] == int(80_000_000 * (4 - 4.127 / 8))
    # ... needed on a device the 2 GB peak fills
    a = advise_one("quantization", p, AdviceContext(device_memory_bytes=p.memory.peak_bytes))
    assert a.status == "recommended"
    assert a.projected.memory_saved_bytes == int(80_000_000 * (4 - 4.127 / 8))
    assert a.projected.time_saved_frac == 0 and a.projected.usd_saved == 0
    assert "QLoRA" in " ".join(a.sources)


def test_fires_on_real_peft_llama():
    from peft import LoraConfig, get_peft_model

    from tests.helpers.profiles import llama, llama_batches, run
    p = run(get_peft_model(llama(), LoraConfig(r=4, target_modules="all-linear")), llama_batches(batch=2, seq=16))
    a = advise_one("quantization", p, AdviceContext(device_memory_bytes=p.memory.peak_bytes))
    assert a.status == "recommended" and a.projected.memory_saved_bytes > 0


def test_not_applicable_for_full_training_mentions_ptq():
    a = advise_one("quantization", llama_plain())
    assert a.status == "not_applicable" and "post-training int8" in a.rationale


def test_already_applied_with_int8_weights():
    p = llama_plain()
    p = replace(p, model=replace(p.model, param_dtypes={"int8": 100, "float32": 10}))
    assert advise_one("quantization", p).status == "already_applied"


def test_a_sliver_of_memory_is_no_saving_even_where_memory_is_short():
    # users saw "quantization recommended to save 1.41 MiB": 10 frozen Linear layers of 42,420 weights,
    # 424,200 x (4 - 4.127/8) bytes = 1,477,965 B = 1.41 MiB, on a device the 2000 MB peak fills
    from ccprof.artefacts.profile import ModuleStat
    p = hand_profile()
    lins = [ModuleStat(name=f"layers.{i}.fc", class_="Linear", params=42_420) for i in range(10)]
    p = replace(p, model=replace(p.model, trainable_params=1_000_000, modules=lins))
    a = advise_one("quantization", p, AdviceContext(device_memory_bytes=p.memory.peak_bytes))
    assert a.status == "no_saving"
    assert a.details["no_saving"]["memory_saved_bytes"] == int(424_200 * (4 - 4.127 / 8)) == 1_477_965
    assert "it frees 1.41 MiB, 0.1% of the 1.86 GiB peak: the run still does not fit" in a.rationale
    assert a.projected.memory_saved_bytes == 0 and a.projected.usd_saved == 0
