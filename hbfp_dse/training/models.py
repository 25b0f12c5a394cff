"""Classification models by name: CIFAR ResNets and DenseNet, a small vision Transformer, small
28x28 models, an MLP, torchvision models.

Every model is built from ``nn.Conv2d`` / ``nn.Linear`` modules (never functional GEMMs) so that the
emulation backend can find and convert each of its GEMM layers.
"""

import torch
import torchvision.models
from torch import Tensor, nn
from torchvision.models.vision_transformer import VisionTransformer

from ..errors import UserError
from .config import TORCHVISION_PREFIX, is_import_path
from .custom import user_model

CIFAR_RESNET_DEPTHS = (8, 20, 32, 44, 56, 74, 110)
MODEL_NAMES: tuple[str, ...] = (
    *(f"resnet{depth}" for depth in CIFAR_RESNET_DEPTHS),
    "densenet40",
    "vit",
    "gpt",
    "cnn",
    "mlp",
)
# The shipped Transformers: their attention matmuls always run quantized.
TRANSFORMER_NAMES = ("vit", "gpt")
# Models of token sequences: built from (vocabulary, context length).
LANGUAGE_MODEL_NAMES = ("gpt",)

# Torchvision builders whose defaults do not suit training from scratch at an arbitrary size.
_TORCHVISION_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


class ShortcutA(nn.Module):
    """He et al. (2016) option A shortcut: parameter-free identity with stride-2 subsampling and
    zero-padded extra channels."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = planes - in_planes

    def forward(self, x: Tensor) -> Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers with a residual connection (ReLU after the addition)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        needs_projection = stride != 1 or in_planes != planes
        self.shortcut = ShortcutA(in_planes, planes, stride) if needs_projection else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth 6n+2 (He et al. 2016, §4.2): a 3x3 conv stem, three stages of n basic
    blocks with 16/32/64 channels (stride 2 at the start of stages 2 and 3), global average
    pooling and one linear layer.

    Shortcuts use option A (parameter-free: stride-2 subsampling plus zero-padded channels), as in
    the paper's CIFAR experiments, so the parameter count matches the paper (0.27M for ResNet-20).
    Convolutions use Kaiming-normal initialisation. Being fully convolutional up to the global
    pooling, the network accepts any input size (32x32 for CIFAR, 28x28 for MNIST-like data).
    """

    def __init__(self, depth: int, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise UserError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        blocks_per_stage = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = self._stage(16, 16, blocks_per_stage, stride=1)
        self.layer2 = self._stage(16, 32, blocks_per_stage, stride=2)
        self.layer3 = self._stage(32, 64, blocks_per_stage, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, num_classes)
        self._init_weights()

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(self.flatten(self.pool(out)))


class DenseLayer(nn.Module):
    """BN, ReLU, 3x3 convolution to ``growth`` channels, concatenated to the input."""

    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(in_channels, growth, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.conv(self.relu(self.bn(x)))], 1)


class Transition(nn.Module):
    """BN, ReLU, 1x1 convolution (channels kept: no compression), 2x2 average pooling."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.conv(self.relu(self.bn(x))))


class CifarDenseNet(nn.Module):
    """DenseNet for CIFAR (Huang et al. 2017, the basic DenseNet without bottlenecks or
    compression): a 3x3 convolution to 16 channels, three dense blocks of (depth - 4) / 3
    layers that each add ``growth`` channels, transitions between them, then BN, ReLU, global
    average pooling and one linear layer. DenseNet-40 (growth 12) has 1.0M parameters."""

    def __init__(self, depth: int, growth: int, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 4) % 3 != 0 or depth < 7:
            raise UserError(f"CIFAR DenseNet depth must be 3n+4 with n >= 1, got {depth}")
        layers_per_block = (depth - 4) // 3
        channels = 16
        stages: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)]
        for block in range(3):
            for _ in range(layers_per_block):
                stages.append(DenseLayer(channels, growth))
                channels += growth
            if block < 2:
                stages.append(Transition(channels))
        stages += [nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*stages)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def small_vit(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """A vision Transformer for 28x28 and 32x32 inputs, small enough to train on a CPU: 4x4
    patches (7x7 or 8x8 of them), 4 encoder blocks of width 64 with 4 heads and MLPs of 128,
    a linear head (torchvision's ``VisionTransformer``; 0.14M parameters)."""
    if image_size % 4:
        raise UserError(f"vit needs an image size divisible by its 4x4 patches, got {image_size}")
    model = VisionTransformer(
        image_size=image_size,
        patch_size=4,
        num_layers=4,
        num_heads=4,
        hidden_dim=64,
        mlp_dim=128,
        num_classes=num_classes,
    )
    if in_channels != 3:
        _replace_first_conv(model, in_channels)
    return model


class CausalBlock(nn.Module):
    """Pre-norm decoder block: causal multi-head self-attention, then a GELU MLP of 4x."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.ln_1(x)
        x = x + self.attention(h, h, h, attn_mask=mask, need_weights=False, is_causal=True)[0]
        return x + self.mlp(self.ln_2(x))


class TinyGPT(nn.Module):
    """A decoder-only Transformer for next-token prediction: token and position embeddings,
    ``layers`` causal blocks, a final LayerNorm and a linear head over the vocabulary; logits
    N x T x vocabulary for tokens N x T (T at most ``context``)."""

    def __init__(
        self, vocabulary: int, context: int, width: int = 64, layers: int = 4, heads: int = 4
    ) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocabulary, width)
        self.positions = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(CausalBlock(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocabulary)
        mask = torch.full((context, context), float("-inf")).triu(1)
        self.register_buffer("mask", mask, persistent=False)
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        length = tokens.shape[1]
        x = self.tokens(tokens) + self.positions(torch.arange(length, device=tokens.device))
        mask = self.mask[:length, :length]
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln(x))


class SmallCNN(nn.Module):
    """Small CNN for 28x28 inputs (docs/training.md): two [3x3 conv, BN, ReLU, 2x2 max-pool]
    layers with 16 and 32 channels, then one linear layer."""

    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        if image_size < 4:
            raise UserError(f"cnn needs images of at least 4x4 pixels, got {image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        pooled = image_size // 2 // 2
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(32 * pooled * pooled, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.features(x)))


class MLP(nn.Module):
    """Flatten, then fully connected hidden layers with ReLU, then a linear classifier."""

    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def torchvision_model_names() -> list[str]:
    """Names of torchvision's classification models (usable as ``tv:<name>``)."""
    return torchvision.models.list_models(module=torchvision.models)


def _accepted_names() -> str:
    return (
        ", ".join(MODEL_NAMES)
        + f", {TORCHVISION_PREFIX}<torchvision classification model>, package.module:function"
    )


def _replace_first_conv(model: nn.Module, in_channels: int) -> None:
    """Swap the first Conv2d for a freshly initialised one reading ``in_channels`` channels."""
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                setattr(parent, child_name, _with_in_channels(child, in_channels))
                return
    raise UserError(f"{type(model).__name__} has no Conv2d whose input channels could be adapted")


def _with_in_channels(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    if conv.groups != 1:
        raise UserError("cannot adapt the input channels of a grouped first convolution")
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )


def _build_torchvision(name: str, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    available = torchvision_model_names()
    if name not in available:
        raise UserError(
            f"unknown torchvision model {name!r}; accepted {TORCHVISION_PREFIX}<name> values: "
            + ", ".join(available)
        )
    kwargs: dict[str, object] = dict(_TORCHVISION_KWARGS.get(name, {}))
    # Vision transformers bake the input size into their position embeddings.
    if name.startswith("vit_"):
        kwargs["image_size"] = image_size
    elif name.startswith("maxvit_"):
        kwargs["input_size"] = (image_size, image_size)
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    if in_channels != 3:
        _replace_first_conv(model, in_channels)
    return model


def build_model(name: str, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Build an untrained classifier by name for ``in_channels`` x ``image_size`` x ``image_size``
    inputs and ``num_classes`` outputs.

    Names: ``resnet8`` (the small ResNet for 28x28 inputs), ``resnet20/32/44/56/74/110`` (CIFAR
    ResNets, option A shortcuts), ``densenet40`` (CIFAR DenseNet, growth 12), ``vit`` (a small
    vision Transformer), ``gpt`` (a small decoder for text: ``num_classes`` is its vocabulary
    and ``image_size`` its context), ``cnn`` (small CNN for 28x28 inputs), ``mlp``, and
    ``tv:<name>`` for any torchvision classification model (``weights=None``, classifier sized to
    ``num_classes``, first convolution replaced when ``in_channels != 3``), and
    ``package.module:function`` for a user's own (``custom.py``).
    """
    if num_classes < 1 or in_channels < 1 or image_size < 1:
        raise UserError(
            f"num_classes, in_channels and image_size must be positive, got "
            f"{num_classes}, {in_channels}, {image_size}"
        )
    if is_import_path(name):
        return user_model(name, num_classes, in_channels, image_size)
    if name.startswith(TORCHVISION_PREFIX):
        return _build_torchvision(
            name.removeprefix(TORCHVISION_PREFIX), num_classes, in_channels, image_size
        )
    if name.startswith("resnet") and name in MODEL_NAMES:
        return CifarResNet(int(name.removeprefix("resnet")), num_classes, in_channels)
    if name == "densenet40":
        return CifarDenseNet(40, 12, num_classes, in_channels)
    if name == "vit":
        return small_vit(num_classes, in_channels, image_size)
    if name == "gpt":
        return TinyGPT(num_classes, image_size)
    if name == "cnn":
        return SmallCNN(num_classes, in_channels, image_size)
    if name == "mlp":
        return MLP(in_channels * image_size * image_size, num_classes)
    raise UserError(f"unknown model {name!r}; accepted names: {_accepted_names()}")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
