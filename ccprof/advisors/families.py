"""Which published family a profiled model belongs to (finetune, lora and warm_start ask), and
which published checkpoint, if any, its architecture can load.

A family name alone is no promise of weights: a 2-layer GPT-2 with a 1,024-token vocabulary is a
'gpt2' model that no published GPT-2 checkpoint fits. :func:`published_match` checks what a
checkpoint must match to be loaded as it is (widths, depth, heads, vocabulary; for torchvision
ResNets the block type and count) against :data:`PUBLISHED`, the configs of published
checkpoints, each with the page that states it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ccprof.artefacts.profile import Profile

__all__ = ["pretrained_family", "VISION_BACKBONES", "Published", "PUBLISHED", "Match", "published_match",
           "model_widths", "published_table"]

# torchvision / timm classes with published ImageNet weights.
VISION_BACKBONES = {
    "ResNet": "resnet", "VisionTransformer": "vit", "EfficientNet": "efficientnet", "ConvNeXt": "convnext",
    "MobileNetV2": "mobilenet_v2", "MobileNetV3": "mobilenet_v3", "RegNet": "regnet", "DenseNet": "densenet",
    "VGG": "vgg", "SwinTransformer": "swin", "Inception3": "inception_v3", "GoogLeNet": "googlenet",
    "ShuffleNetV2": "shufflenet_v2", "SqueezeNet": "squeezenet", "MaxVit": "maxvit", "AlexNet": "alexnet",
}


@dataclass(frozen=True)
class Published:
    """A published checkpoint's architecture: what a model must have to load its weights as they are.

    ``widths`` maps a width's name to its value: ``hidden_size``, ``num_hidden_layers``,
    ``num_attention_heads``, ``vocab_size`` (Hugging Face config names; GPT-2's n_embd/n_layer/n_head
    and T5's d_model/num_layers/num_heads are the same widths), or a ResNet's ``block`` class and
    ``blocks`` count. ``source``: the page that states them.
    """
    id: str                                 # what from_pretrained / the torchvision builder takes
    family: str                             # HF model_type, or the VISION_BACKBONES family
    widths: dict[str, object] = field(default_factory=dict)
    source: str = ""


def _hf(hub_id: str, family: str, hidden: int, layers: int, heads: int, vocab: int | None) -> Published:
    widths: dict[str, object] = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads}
    if vocab is not None:
        widths["vocab_size"] = vocab
    return Published(hub_id, family, widths, f"https://huggingface.co/{hub_id}/blob/main/config.json")


def _resnet(name: str, block: str, blocks: int) -> Published:
    return Published(name, "resnet", {"block": block, "blocks": blocks},
                     "torchvision.models.resnet (He et al., Deep Residual Learning, CVPR 2016, Table 1: "
                     "layers [2,2,2,2] BasicBlock for 18, [3,4,6,3] for 34 and 50, [3,4,23,3] for 101, [3,8,36,3] for 152)")


# Configs of published checkpoints, as their config.json on the Hugging Face Hub states them.
PUBLISHED: tuple[Published, ...] = (
    _hf("openai-community/gpt2", "gpt2", 768, 12, 12, 50257),
    _hf("openai-community/gpt2-medium", "gpt2", 1024, 24, 16, 50257),
    _hf("openai-community/gpt2-large", "gpt2", 1280, 36, 20, 50257),
    _hf("openai-community/gpt2-xl", "gpt2", 1600, 48, 25, 50257),
    _hf("distilbert/distilgpt2", "gpt2", 768, 6, 12, 50257),
    _hf("google-bert/bert-base-uncased", "bert", 768, 12, 12, 30522),
    _hf("google-bert/bert-base-cased", "bert", 768, 12, 12, 28996),
    _hf("google-bert/bert-large-uncased", "bert", 1024, 24, 16, 30522),
    _hf("FacebookAI/roberta-base", "roberta", 768, 12, 12, 50265),
    _hf("FacebookAI/roberta-large", "roberta", 1024, 24, 16, 50265),
    _hf("google-t5/t5-small", "t5", 512, 6, 8, 32128),
    _hf("google-t5/t5-base", "t5", 768, 12, 12, 32128),
    _hf("google-t5/t5-large", "t5", 1024, 24, 16, 32128),
    _hf("meta-llama/Llama-3.2-1B", "llama", 2048, 16, 32, 128256),
    _hf("meta-llama/Llama-3.2-3B", "llama", 3072, 28, 24, 128256),
    _hf("meta-llama/Llama-3.1-8B", "llama", 4096, 32, 32, 128256),
    _hf("Qwen/Qwen2.5-0.5B", "qwen2", 896, 24, 14, 151936),
    _hf("Qwen/Qwen2.5-1.5B", "qwen2", 1536, 28, 12, 151936),
    _hf("mistralai/Mistral-7B-v0.1", "mistral", 4096, 32, 32, 32000),
    _hf("google/vit-base-patch16-224", "vit", 768, 12, 12, None),
    _hf("google/vit-large-patch16-224", "vit", 1024, 24, 16, None),
    _resnet("resnet18", "BasicBlock", 8),
    _resnet("resnet34", "BasicBlock", 16),
    _resnet("resnet50", "Bottleneck", 16),
    _resnet("resnet101", "Bottleneck", 33),
    _resnet("resnet152", "Bottleneck", 50),
)

# how each width reads in a sentence
_WIDTH_NAMES = {"hidden_size": "hidden size", "num_hidden_layers": "layers", "num_attention_heads": "attention heads",
                "vocab_size": "vocabulary", "block": "block", "blocks": "residual blocks"}
# Hugging Face configs that spell a width another way (GPT-2, T5); the first one present wins
_ALIASES = {"hidden_size": ("hidden_size", "n_embd", "d_model"),
            "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers"),
            "num_attention_heads": ("num_attention_heads", "n_head", "num_heads"),
            "vocab_size": ("vocab_size",)}


def pretrained_family(profile: Profile) -> str | None:
    """The pretrained family the model matches: HF model_type, or a known vision backbone."""
    m = profile.model
    if m.hf_model_type:
        return m.hf_model_type
    for cls in [m.class_, *m.roots]:
        if cls in VISION_BACKBONES:
            return VISION_BACKBONES[cls]
    return None


def model_widths(profile: Profile) -> dict[str, object]:
    """The profiled model's widths under :class:`Published`'s names (those the profile knows)."""
    m = profile.model
    out: dict[str, object] = {}
    for name, keys in _ALIASES.items():
        value = next((m.hf_config[k] for k in keys if isinstance(m.hf_config.get(k), int)), None)
        if value is not None:
            out[name] = value
    if pretrained_family(profile) == "resnet":
        counts: dict[str, int] = {}
        for mod in m.modules:
            if mod.class_ in ("BasicBlock", "Bottleneck"):
                counts[mod.class_] = counts.get(mod.class_, 0) + 1
        if counts:
            block = max(counts, key=lambda k: counts[k])
            out["block"], out["blocks"] = block, counts[block]
    return out


@dataclass(frozen=True)
class Match:
    """A published checkpoint the model can load (``differs`` empty), or the closest one and how
    the model differs from it (``"vocabulary 1,024 (openai-community/gpt2: 50,257)"``)."""
    published: Published
    differs: list[str]
    unknown: list[str]                      # widths the profile does not record (not checked)

    @property
    def fits(self) -> bool:
        return not self.differs

    def says(self) -> str:
        """``openai-community/gpt2 (hidden size 768, 12 layers, ...; https://...)``."""
        widths = ", ".join(f"{_WIDTH_NAMES.get(k, k)} {_fmt(v)}" for k, v in self.published.widths.items())
        return f"{self.published.id} ({widths})"


def _fmt(v: object) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def _distance(pub: Published, have: dict[str, object]) -> float:
    d = 0.0
    for k, want in pub.widths.items():
        got = have.get(k)
        if got is None or got == want:
            continue
        if isinstance(got, int) and isinstance(want, int) and got > 0 and want > 0:
            d += abs(math.log(got / want))
        else:
            d += 10.0
    return d


def published_match(profile: Profile, widths: tuple[str, ...] | None = None) -> Match | None:
    """The published checkpoint of the model's family that it can load, else the closest one.

    ``widths``: the widths that must match (default: all a checkpoint states); warm_start asks
    only for ``("hidden_size", "vocab_size")``, what an embedding table's shape needs. None when the
    family has no published config in :data:`PUBLISHED` (nothing to check against).

    Example: a GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=1024) model gives
    ``Match(openai-community/gpt2, differs=["hidden size 128 (openai-community/gpt2: 768)", ...])``.
    """
    fam = pretrained_family(profile)
    candidates = [p for p in PUBLISHED if p.family == fam]
    if not candidates:
        return None
    have = model_widths(profile)

    def checked(p: Published) -> Published:
        if widths is None:
            return p
        return Published(p.id, p.family, {k: v for k, v in p.widths.items() if k in widths}, p.source)

    best = min((checked(p) for p in candidates),
               key=lambda p: (sum(1 for k, v in p.widths.items() if k in have and have[k] != v), _distance(p, have)))
    differs = [f"{_WIDTH_NAMES.get(k, k)} {_fmt(have[k])} ({best.id}: {_fmt(v)})"
               for k, v in best.widths.items() if k in have and have[k] != v]
    unknown = [_WIDTH_NAMES.get(k, k) for k in best.widths if k not in have]
    return Match(best, differs, unknown)


def published_table(num_embeddings: int, dim: int) -> Published | None:
    """A published checkpoint whose token embedding has this shape, whatever the model's class (a
    nanoGPT ``GPT`` with GPT-2's 50,257 x 768 table, or its 50,304 rows: nanoGPT pads the vocabulary
    to a multiple of 64); None when there is none."""
    for p in PUBLISHED:
        vocab, hidden = p.widths.get("vocab_size"), p.widths.get("hidden_size")
        if isinstance(vocab, int) and hidden == dim and num_embeddings in (vocab, -(-vocab // 64) * 64):
            return p
    return None
