"""Sanity checks (docs/METHODS.md §3, paper Table IV, after Adebayo et al. 2018).

- original: the trained target, explaining its prediction.
- random_weights: a copy of the target with every weight re-initialised (seeded); the method re-explains
  the randomised model's prediction and the perturbation test runs against the randomised model. AUC-D
  must collapse towards 0 for a method that depends on what the model learned.
- random_label: explain a uniformly random class other than the predicted one; scored as usual.
All three are scored on the fair-resolution variant, against the true labels.

Those AUCs test the model more than the map (a randomised model predicts one class for every image, so Pos AUC =
Neg AUC whatever the map). `map_sanity` looks at the maps themselves (Adebayo et al. 2018): the trained model's
maps against the maps of the same images and classes after
- cascading randomisation: the layer groups (`layer_groups`: head, blocks, stem) replaced from the top down by
  their weights in Table IV's randomised model, at the depths `sanity.cascade` names; the last depth (1) is
  exactly that model;
- independent randomisation: one group at a time;
- label randomisation: the random other class of Table IV's random_label setting, on the trained model;
- and, as the reference level, another image's map from the trained model (`other_image`);
scored by Spearman, SSIM and HOG similarity (similarity.py). A method that depends on what the model
learned falls towards 0 as the weights go.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from .compute import module_device
from .config import check_cascade
from .engine import ForwardEngine
from .errors import ScanbenchError
from .metrics.perturbation import Forward, auc, curve, fair_resolution, perturbation_correct
from .similarity import map_similarity, summarise_similarity

# (model, forward engine of that model) -> an Explainer
ExplainerMaker = Callable[[nn.Module, Forward], object]
SETTINGS = ("original", "random_weights", "random_label")


def randomize_weights(model: nn.Module, seed: int, std: float = 0.02) -> nn.Module:
    """A copy of `model` with all weights re-initialised from a seeded RNG.

    Modules with `reset_parameters` (convs, linears, norms - BN running statistics included) use their
    own PyTorch default init; parameters held by modules without it (a ViT's pos_embed and cls_token,
    layer-scale gammas) are drawn from N(0, std^2), timm's init scale for them. Buffers that are
    preprocessing (mean, std, class indices) stay. Drawn on the CPU (the same weights whatever the device), then
    moved to the model's device.
    """
    device = module_device(model)
    rand = copy.deepcopy(model).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.no_grad():
            for m in rand.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
                elif hasattr(m, "reset_running_stats"):
                    m.reset_running_stats()
                else:
                    for p in m.parameters(recurse=False):
                        p.normal_(0.0, std)
    return rand.to(device).eval()


def random_other_classes(pred: torch.Tensor, n_classes: int, seed: int, rows: range | None = None,
                         n_total: int | None = None) -> torch.Tensor:
    """For each prediction, a class drawn uniformly from the other n_classes - 1 classes. A shard of a
    data-parallel run passes its `rows` of the `n_total` images: every image's draw is made, its rows' kept."""
    if n_classes < 2:
        raise ScanbenchError(f"the random-label check needs at least 2 classes (got {n_classes})")
    pred = torch.as_tensor(pred, dtype=torch.long).view(-1).cpu()   # drawn on the CPU: the same on every device
    shape = pred.shape if rows is None else (n_total,)
    r = torch.randint(0, n_classes - 1, shape, generator=torch.Generator().manual_seed(seed))
    if rows is not None:
        r = r[rows.start:rows.stop]
    return r + (r >= pred).long()   # skip the predicted class


def fair_correctness(forward: Forward, images01: torch.Tensor, maps: torch.Tensor, labels: torch.Tensor, grid: int,
                     fractions: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-image (pos, neg) correctness (N x S) of the perturbation test on fair-resolution maps."""
    res = perturbation_correct(forward, images01, fair_resolution(maps, grid), labels, fractions)
    return res.pos, res.neg


def fair_aucs_of(pos: np.ndarray, neg: np.ndarray, fractions: Sequence[float]) -> dict[str, float]:
    """{"auc_d", "neg_auc", "pos_auc"} (percent) from per-image correctness."""
    pos_auc, neg_auc = float(auc(curve(pos), fractions)), float(auc(curve(neg), fractions))
    return {"auc_d": neg_auc - pos_auc, "neg_auc": neg_auc, "pos_auc": pos_auc}


def fair_aucs(forward: Forward, images01: torch.Tensor, maps: torch.Tensor, labels: torch.Tensor, grid: int,
              fractions: Sequence[float]) -> dict[str, float]:
    """{"auc_d", "neg_auc", "pos_auc"} (percent) of the perturbation test on fair-resolution maps."""
    return fair_aucs_of(*fair_correctness(forward, images01, maps, labels, grid, fractions), fractions)


def _skip(explainer, n_images: int, h: int, w: int) -> None:
    """Explainer.skip where there is something to skip (a single run never calls it)."""
    if n_images:
        explainer.skip(n_images, h, w)


def sanity_scores(make: ExplainerMaker, model: nn.Module, forward: Forward, images01: torch.Tensor,
                  labels: torch.Tensor, grid: int, fractions: Sequence[float], seed: int, batch_size: int = 64,
                  rows: range | None = None, n_total: int | None = None,
                  maps_out: dict | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per setting, per-image (pos, neg) correctness of the three settings of Table IV (`sanity_check`'s
    per-image part; `maps_out` as there). A shard of a data-parallel run passes its `rows` of `n_total` images:
    its seeded draws (random classes, a random method's maps) are those the single run makes for these images."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    n, h, w = images01.shape[0], images01.shape[-2], images01.shape[-1]
    start, total = (0, n) if rows is None else (rows.start, n_total)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    logits = forward(images01)
    pred = logits.argmax(1)
    explainer = make(model, forward)
    _skip(explainer, start, h, w)
    original_maps = explainer.explain(images01, pred)
    out["original"] = fair_correctness(forward, images01, original_maps, labels, grid, fractions)

    rand_model = randomize_weights(model, seed)
    rand_forward = ForwardEngine(rand_model, "torch", batch_size=batch_size)
    rand_pred = rand_forward(images01).argmax(1)
    rand_explainer = make(rand_model, rand_forward)
    _skip(rand_explainer, start, h, w)
    out["random_weights"] = fair_correctness(rand_forward, images01, rand_explainer.explain(images01, rand_pred),
                                             labels, grid, fractions)

    other = random_other_classes(pred, logits.shape[1], seed, rows, n_total)
    _skip(explainer, total - n, h, w)   # the single run explains every image before the random labels
    label_maps = explainer.explain(images01, other)
    out["random_label"] = fair_correctness(forward, images01, label_maps, labels, grid, fractions)
    if maps_out is not None:
        maps_out.update(pred=pred, original=original_maps, random_label=label_maps, random_model=rand_model)
    return out


def concat_sanity_scores(parts: Sequence[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-image scores of consecutive shards (in image order) as those of all their images."""
    return {s: (np.concatenate([p[s][0] for p in parts]), np.concatenate([p[s][1] for p in parts]))
            for s in parts[0]}


def sanity_summary(scores: dict[str, tuple[np.ndarray, np.ndarray]], fractions: Sequence[float]
                   ) -> dict[str, dict[str, float]]:
    return {s: fair_aucs_of(pos, neg, fractions) for s, (pos, neg) in scores.items()}


def sanity_check(make: ExplainerMaker, model: nn.Module, forward: Forward, images01: torch.Tensor,
                 labels: torch.Tensor, grid: int, fractions: Sequence[float], seed: int,
                 batch_size: int = 64, maps_out: dict | None = None) -> dict[str, dict[str, float]]:
    """The three settings of Table IV for one method. `forward` is the trained target's engine; the
    randomised model is run through a torch ForwardEngine (it has no exported graph). `maps_out`, when given,
    receives what `map_sanity` reuses: `pred` (the trained model's predictions), the `original` and
    `random_label` maps and the `random_model`."""
    return sanity_summary(sanity_scores(make, model, forward, images01, labels, grid, fractions, seed, batch_size,
                                        maps_out=maps_out), fractions)


@dataclass(frozen=True)
class LayerGroup:
    """Weights randomised together: `name` (stem, blocks.<i> / layer<i>, head) and the state_dict key prefixes
    (relative to the TargetModel) they cover."""
    name: str
    prefixes: tuple[str, ...]

    def owns(self, key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in self.prefixes)


def _is_block_container(name: str) -> bool:
    return name == "blocks" or re.fullmatch(r"layer\d+", name) is not None   # timm ViT / EfficientNet; ResNet


def layer_groups(model: nn.Module) -> list[LayerGroup]:
    """The randomisation units of a TargetModel, bottom to top: `stem` (everything of `model.net` before the
    blocks, with the parameters `net` holds itself: a ViT's pos_embed, cls_token), each block (EfficientNet: its
    7 stages `blocks.<i>`; ViT: `blocks.<i>`; ResNet: `layer<i>`), `head` (everything after them: conv_head, norm,
    classifier, and a fitted head the TargetModel holds beside `net`). The preprocessing buffers (mean, std, class
    indices) belong to none."""
    net = getattr(model, "net", None)
    if net is None:
        raise ScanbenchError("layer randomisation needs a TargetModel (a `net` submodule)")
    children = [(n, c) for n, c in net.named_children() if any(True for _ in c.state_dict())]
    is_block = [_is_block_container(n) for n, _ in children]
    if not any(is_block):
        raise ScanbenchError(f"cannot find the blocks of {type(net).__name__} (no `blocks` or `layer<i>` child): "
                             f"the layer randomisation of the sanity check supports timm ViTs, EfficientNets and "
                             f"ResNets")
    first, last = is_block.index(True), len(is_block) - 1 - is_block[::-1].index(True)
    if not all(is_block[first:last + 1]):
        between = [n for (n, _), b in zip(children[first:last + 1], is_block[first:last + 1]) if not b]
        raise ScanbenchError(f"{type(net).__name__}: weights between its blocks ({', '.join(between)}) fit no "
                             f"randomisation group")
    own = tuple(f"net.{n}" for n, _ in net.named_parameters(recurse=False)) + \
        tuple(f"net.{n}" for n, _ in net.named_buffers(recurse=False))
    groups = [LayerGroup("stem", own + tuple(f"net.{n}" for n, _ in children[:first]))]
    for n, c in children[first:last + 1]:
        if n == "blocks":
            groups += [LayerGroup(f"blocks.{i}", (f"net.blocks.{i}",)) for i, _ in c.named_children()]
        else:
            groups.append(LayerGroup(n, (f"net.{n}",)))
    # a head fitted outside `net` (the TargetModel's own `head`, for non-ImageNet classes) is the top of the head
    fitted = tuple(n for n, c in model.named_children() if n != "net" and any(True for _ in c.state_dict()))
    groups.append(LayerGroup("head", tuple(f"net.{n}" for n, _ in children[last + 1:]) + fitted))
    return [g for g in groups if g.prefixes]


def cascade_steps(groups: Sequence[LayerGroup], cascade: Sequence[float]) -> list[tuple[str, float, list[LayerGroup]]]:
    """(setting name, share, the groups randomised) per depth: the head, then the top ceil(share x blocks) blocks;
    share 1 adds the stem too (every weight). Setting names are the shares ("0", "0.25", ..., "1")."""
    head, stem, blocks = groups[-1], groups[0], list(groups[1:-1])
    steps = []
    for f in check_cascade(list(cascade)):
        k = min(len(blocks), math.ceil(f * len(blocks) - 1e-9))
        chosen = [head, *blocks[::-1][:k]] + ([stem] if f == 1 else [])
        steps.append((f"{f:g}", f, chosen))
    return steps


def partially_randomised(model: nn.Module, random_model: nn.Module, groups: Sequence[LayerGroup]) -> nn.Module:
    """A copy of `model` whose weights (and buffers) in `groups` are those of `random_model`."""
    out = copy.deepcopy(model)
    rand_state = random_model.state_dict()
    with torch.no_grad():
        for key, value in out.state_dict().items():
            if any(g.owns(key) for g in groups):
                value.copy_(rand_state[key].to(value.device))
    return out.eval()


def map_sanity(make: ExplainerMaker, model: nn.Module, images01: torch.Tensor, classes: torch.Tensor,
               original_maps: torch.Tensor, random_model: nn.Module, cascade: Sequence[float], size: int,
               n_resamples: int, seed: int, label_maps: torch.Tensor | None = None, batch_size: int = 64) -> dict:
    """Similarity of the trained model's maps (`original_maps`, of `classes`) to the maps of the same classes
    after cascading and independent randomisation (weights from `random_model`, Table IV's), and to
    `label_maps` (the random-label maps); `other_image`: each original map against another image's (the next
    one's), the similarity of two maps that share the method and model but not the image: what a map falls to
    once it stops depending on the image (a centre-heavy method stays above 0 there). The randomised models
    explain the trained model's classes, so only the weights change between the two maps (Table IV's random_weights
    AUCs explain the randomised model's own prediction, which its perturbation test needs)."""
    groups = layer_groups(model)

    def similarity_to(rand_groups: Sequence[LayerGroup]) -> dict:
        m = partially_randomised(model, random_model, rand_groups)
        maps = make(m, ForwardEngine(m, "torch", batch_size=batch_size)).explain(images01, classes)
        return summarise_similarity(map_similarity(original_maps, maps, size), n_resamples, seed)

    out: dict = {"size": size, "n_images": int(len(images01)), "groups": [g.name for g in groups],
                 "cascading": {}, "independent": {}}
    for name, share, chosen in cascade_steps(groups, cascade):
        out["cascading"][name] = {"share": share, "n_groups": len(chosen),
                                  "randomised": [g.name for g in chosen], **similarity_to(chosen)}
    for i, g in enumerate(groups):
        out["independent"][g.name] = {"position": i, "randomised": [g.name], **similarity_to([g])}
    if label_maps is not None:
        out["random_label"] = summarise_similarity(map_similarity(original_maps, label_maps, size), n_resamples,
                                                   seed)
    if len(original_maps) >= 2:   # the reference level: each image's map against the next image's, same model
        out["other_image"] = summarise_similarity(map_similarity(original_maps, original_maps.roll(1, 0), size),
                                                  n_resamples, seed)
    return out


def summary_line(method: str, result: dict[str, dict[str, float]]) -> str:
    return f"{method}: " + ", ".join(f"{s} AUC-D {result[s]['auc_d']:.2f}" for s in SETTINGS if s in result)


__all__ = ["LayerGroup", "SETTINGS", "cascade_steps", "check_cascade", "concat_sanity_scores", "fair_aucs",
           "layer_groups", "map_sanity", "partially_randomised", "random_other_classes", "randomize_weights",
           "sanity_check", "sanity_scores", "sanity_summary", "summary_line"]
