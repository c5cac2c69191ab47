"""quantization: frozen base weights in int8/4-bit (QLoRA style); PTQ for inference."""
from __future__ import annotations

from ccprof.advisors import constants as C
from ccprof.advisors._common import fmt_bytes, fmt_num, fmt_pct, ledger, linear_modules, make_advice
from ccprof.advisors._registry import register
from ccprof.advisors.context import AdviceContext
from ccprof.artefacts.advice import Advice
from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import QuantizationOptions

__all__ = ["advise_quantization"]

SNIPPET = """
from transformers import AutoModelForCausalLM, BitsAndBytesConfig
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                         bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
model = AutoModelForCausalLM.from_pretrained(model_id, quantization_config=bnb)
model = get_peft_model(prepare_model_for_kbit_training(model), LoraConfig(r=8, target_modules="all-linear"))
# Inference only: torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
"""

_QUANT_DTYPES = ("int8", "uint8", "int4", "qint8", "float8_e4m3fn", "nf4")


@register("quantization")
def advise_quantization(profile: Profile, ctx: AdviceContext) -> Advice:
    """Memory saved by storing the frozen Linear weights in 4 bits (QLoRA)."""
    m = profile.model
    if any(d in _QUANT_DTYPES for d in m.param_dtypes) or any(
            "4bit" in s.class_ or "8bit" in s.class_ for s in m.modules):
        return make_advice("quantization", "already_applied", profile, ctx, confidence="high", snippet=SNIPPET,
                           rationale=f"Quantized weights were seen ({', '.join(m.param_dtypes)}).")
    frozen = m.params - m.trainable_params
    frozen_share = frozen / m.params if m.params else 0.0
    lin = sum(s.params for s in linear_modules(profile))
    lin_frozen = min(lin, frozen) if frozen_share >= C.QUANT_FROZEN_SHARE_MIN else 0
    pretrained = m.pretrained or profile.static.from_pretrained
    led = ledger(profile)
    per_param = C.BYTES_FP32 if m.param_dtypes.get("float32", 0) >= sum(m.param_dtypes.values() or [0]) / 2 else 2
    if lin_frozen:
        saved = int(lin_frozen * (per_param - C.QUANT_4BIT_BYTES_PER_PARAM))
        rationale = (f"{fmt_num(frozen)} of {fmt_num(m.params)} parameters are frozen ({fmt_pct(frozen_share)}); "
                     f"{fmt_num(lin_frozen)} of them sit in Linear layers at {per_param} bytes each. In NF4 with double "
                     f"quantization they take {C.QUANT_4BIT_BYTES_PER_PARAM:.3f} bytes: {fmt_bytes(saved)} less, peak "
                     f"{fmt_bytes(led.peak)} -> {fmt_bytes(led.peak - saved)}. Dequantizing in each matmul costs some "
                     "time (not counted as a saving).")
        return make_advice("quantization", "recommended", profile, ctx, confidence="medium", risk="accuracy",
                           memory_saved_bytes=saved, rationale=rationale, snippet=SNIPPET,
                           assumptions=["Frozen Linear weights quantized to NF4 (bitsandbytes, CUDA only).",
                                        "Time saved is 0: the win is memory (a smaller or cheaper GPU, larger batch)."],
                           sources=["Dettmers et al., QLoRA, NeurIPS 2023 (4.127 bits/param, 65B on one 48 GB GPU)"],
                           details={"frozen_linear_params": lin_frozen, "bytes_per_param_after": C.QUANT_4BIT_BYTES_PER_PARAM},
                           options=QuantizationOptions(bits=4))        # NF4, as projected: --verify runs int4
    infer_after = int(lin * C.QUANT_INT8_BYTES_PER_PARAM)
    why = ("all weights train, so none can be stored quantized during training"
           + ("; with LoRA on this pretrained model the frozen base could be 4-bit (QLoRA)" if pretrained else ""))
    return make_advice("quantization", "not_applicable", profile, ctx, confidence="medium", snippet=SNIPPET,
                       rationale=(f"Only {fmt_pct(frozen_share)} of the parameters are frozen: {why}. For serving, "
                                  f"post-training int8 quantization would shrink the {fmt_num(lin)} Linear weights from "
                                  f"{fmt_bytes(lin * per_param)} to {fmt_bytes(infer_after)} (PyTorch docs: 4x smaller, "
                                  "2-4x faster int8 compute)."),
                       details={"inference_linear_bytes_after": infer_after, "qlora_with_lora": pretrained})
