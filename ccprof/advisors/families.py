"""Which published family a profiled model belongs to (finetune, lora and warm_start ask)."""
from __future__ import annotations

from ccprof.artefacts.profile import Profile

__all__ = ["pretrained_family", "VISION_BACKBONES"]

# torchvision / timm classes with published ImageNet weights.
VISION_BACKBONES = {
    "ResNet": "resnet", "VisionTransformer": "vit", "EfficientNet": "efficientnet", "ConvNeXt": "convnext",
    "MobileNetV2": "mobilenet_v2", "MobileNetV3": "mobilenet_v3", "RegNet": "regnet", "DenseNet": "densenet",
    "VGG": "vgg", "SwinTransformer": "swin", "Inception3": "inception_v3", "GoogLeNet": "googlenet",
    "ShuffleNetV2": "shufflenet_v2", "SqueezeNet": "squeezenet", "MaxVit": "maxvit", "AlexNet": "alexnet",
}


def pretrained_family(profile: Profile) -> str | None:
    """The pretrained family the model matches: HF model_type, or a known vision backbone."""
    m = profile.model
    if m.hf_model_type:
        return m.hf_model_type
    for cls in [m.class_, *m.roots]:
        if cls in VISION_BACKBONES:
            return VISION_BACKBONES[cls]
    return None
