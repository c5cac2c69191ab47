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
