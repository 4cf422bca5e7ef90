"""Backbones by name: each maps a normalised image batch to a feature map ``(N, C, h, w)``.

``small_cnn`` is ours, sized for 28x28 inputs; the others are torchvision architectures
with random initialisation (no weight downloads), imported only when one is built (importing
torchvision costs a CLI command seconds). :func:`register_backbone` adds more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from trusttango.errors import InputError
from trusttango.models.layers import activation, norm2d


@dataclass(frozen=True)
class BackboneSpec:
    """How to build a backbone and what it expects."""

    build: Callable[..., tuple[nn.Module, int]]  # (width, depth, act, norm, in_ch) -> (module, out_channels)
    rgb: bool  # wants 3 input channels
    min_size: int  # smallest sensible input side
    pools_per_stage: bool = False  # halves the side after each stage but the last (input side >= 2^(depth-1))


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(name: str, rgb: bool, min_size: int, pools_per_stage: bool = False) -> Callable:
    """Decorator adding ``build(width, depth, act, norm, in_channels)`` as backbone ``name``."""

    def wrap(build: Callable[..., tuple[nn.Module, int]]) -> Callable[..., tuple[nn.Module, int]]:
        BACKBONES[name] = BackboneSpec(build, rgb, min_size, pools_per_stage)
        return build

    return wrap


def backbone_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise InputError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def _conv_block(c_in: int, c_out: int, act: str, norm: str) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm == "none"), norm2d(norm, c_out), activation(act)]


@register_backbone("small_cnn", rgb=False, min_size=8, pools_per_stage=True)
def small_cnn(width: float, depth: int, act: str, norm: str, in_channels: int) -> tuple[nn.Module, int]:
    """``depth`` stages of two 3x3 conv blocks, the first ``depth - 1`` ending in 2x2 max-pool.

    Channels start at ``32 * width`` and double per stage.
    """
    layers: list[nn.Module] = []
    c_in = in_channels
    for stage in range(depth):
        c_out = max(8, int(round(32 * width * 2**stage)))
        layers += _conv_block(c_in, c_out, act, norm) + _conv_block(c_out, c_out, act, norm)
        if stage < depth - 1:
            layers.append(nn.MaxPool2d(2))
        c_in = c_out
    return nn.Sequential(*layers), c_in


@register_backbone("mlp", rgb=False, min_size=1)
def mlp(width: float, depth: int, act: str, norm: str, in_channels: int) -> tuple[nn.Module, int]:
    """For tables: ``depth`` fully connected layers of ``256 * width`` units, as 1x1 convolutions
    over the ``(N, F, 1, 1)`` view the tabular preprocessing produces."""
    hidden = max(8, int(round(256 * width)))
    layers: list[nn.Module] = []
    for layer in range(depth):
        c_in = in_channels if layer == 0 else hidden
        layers += [nn.Conv2d(c_in, hidden, 1, bias=norm == "none"), norm2d(norm, hidden), activation(act)]
    return nn.Sequential(*layers), hidden


def _swap_activations(module: nn.Module, act: str) -> None:
    """Replace torchvision's (often in-place) activations with fresh ``act`` modules."""
    for name, child in module.named_children():
        if isinstance(child, (nn.ReLU, nn.ReLU6, nn.SiLU)):
            setattr(module, name, activation(act))
        else:
            _swap_activations(child, act)


def _swap_norms(module: nn.Module, norm: str) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and norm != "batch":
            setattr(module, name, norm2d(norm, child.num_features))
        else:
            _swap_norms(child, norm)


def _torchvision(net: nn.Module, act: str, norm: str) -> nn.Module:
    _swap_activations(net, act)
    _swap_norms(net, norm)
    return net


@register_backbone("mobilenet_v2", rgb=True, min_size=32)
def mobilenet_v2(width: float, depth: int, act: str, norm: str, in_channels: int) -> tuple[nn.Module, int]:
    """torchvision MobileNetV2 features (Sandler et al. 2018), width multiplier ``width``."""
    from torchvision import models as tvm

    net = tvm.mobilenet_v2(weights=None, width_mult=width).features
    return _torchvision(net, act, norm), net[-1][0].out_channels


@register_backbone("efficientnet_b0", rgb=True, min_size=32)
def efficientnet_b0(width: float, depth: int, act: str, norm: str, in_channels: int) -> tuple[nn.Module, int]:
    """torchvision EfficientNet-B0 features (Tan & Le 2019)."""
    from torchvision import models as tvm

    net = tvm.efficientnet_b0(weights=None).features
    return _torchvision(net, act, norm), 1280


@register_backbone("resnet18", rgb=True, min_size=32)
def resnet18(width: float, depth: int, act: str, norm: str, in_channels: int) -> tuple[nn.Module, int]:
    """torchvision ResNet-18 (He et al. 2016) without its pooling and classifier."""
    from torchvision import models as tvm

    net = tvm.resnet18(weights=None)
    body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    return _torchvision(body, act, norm), 512
