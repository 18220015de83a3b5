"""Layer-wise relevance propagation (LRP) through a timm VisionTransformer, with the rules of Chefer et al.'s
reference code for their LRP baselines (Transformer-Explainability, `modules/layers_lrp.py` + `ViT_orig_LRP.py`):

- Linear (qkv, proj, fc1, fc2, head): LRP-alpha-beta (alpha = 1, beta = 0 in their runs; the bias left out of
  z as in their code) or LRP-epsilon (the bias in z: it keeps its share);
- GELU, LayerNorm (norm1, norm2, final norm, q/k norms), softmax, LayerScale, dropout: relevance passes unchanged;
- the residual adds and the two attention matmuls (Q K^T, A V): the z-rule (gradient x input), each matmul
  operand taking half of the relevance; the residual fork sums its branches' relevance; CLS pooling puts the
  class relevance on the CLS token.

A batched forward with hooks records what the rules need (timm's fused attention off, the attention maps
through `AttentionRecorder`); `relevance` then walks back from the explained class module by module. Where
the propagation stops ("input") is the token sequence entering the first block (patch embeddings + position
embeddings + prefix tokens); the map is the patch embeddings' share of it (the z-rule split of the
position-embedding add, as Chefer's `add.relprop`), summed over channels. Images do not interact in an eval-mode
ViT, so every rule works per image inside the batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import ScanbenchError
from ..hooks import AttentionRecorder
from .base import Explainer, MethodSettings

RULES = ("alpha_beta", "epsilon")


def check_lrp_params(method: str, rule, alpha, epsilon) -> tuple[str, float, float]:
    """explain.<method>.{rule, alpha, epsilon}: one line naming the key to fix when a value is unusable."""
    if rule not in RULES:
        raise ScanbenchError(f"explain.{method}.rule must be one of {', '.join(RULES)} (got {rule!r})")
    for key, value, low in (("alpha", alpha, 1.0), ("epsilon", epsilon, 0.0)):
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        if not ok or value < low or (key == "epsilon" and value == 0):
            need = ">= 1 (beta = alpha - 1; 1 is Chefer's)" if key == "alpha" else "> 0 (e.g. 1e-6)"
            raise ScanbenchError(f"explain.{method}.{key} must be a number {need} (got {value!r})")
    return rule, float(alpha), float(epsilon)


@dataclass(frozen=True)
class LRPSettings(MethodSettings):
    """explain.<lrp|partial_lrp>: the Linear layers' `rule` (alpha_beta, alpha 1 = beta 0 as Chefer et al. ran it;
    or epsilon), `alpha` and `epsilon`, the stabiliser of every division (docs/DECISIONS.md)."""
    rule: str = "alpha_beta"
    alpha: float = 1.0
    epsilon: float = 1e-6

    def check(self, method: str) -> None:
        check_lrp_params(method, self.rule, self.alpha, self.epsilon)


class LRPBase(Explainer):
    """What LRP and partial LRP share: their settings (`LRPSettings`) and the propagation rule they check."""
    Settings = LRPSettings

    def __init__(self, *args, rule: str = LRPSettings.rule, alpha: float = LRPSettings.alpha,
                 epsilon: float = LRPSettings.epsilon, **kwargs):
        super().__init__(*args, **kwargs)
        self.rule, self.alpha, self.epsilon = check_lrp_params(self.name, rule, alpha, epsilon)


def _divide(r: torch.Tensor, z: torch.Tensor, eps: float) -> torch.Tensor:
    """r / (z + eps sign(z)), 0 where z is exactly 0 (nothing flowed through there)."""
    den = z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)
    return torch.where(z == 0, torch.zeros_like(r), r / den)


def linear_relevance(x: torch.Tensor, weight: torch.Tensor, r: torch.Tensor, rule: str, alpha: float,
                     eps: float, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Relevance r (... x out) of y = x W^T + b onto x (... x in).

    epsilon:    R_i = sum_j x_i w_ji r_j / (z_j + eps sign z_j),  z_j = sum_i x_i w_ji + b_j (the bias keeps
                its share, as in Montavon et al.'s LRP-epsilon: z is the layer's actual output, so a unit whose
                weighted inputs cancel does not hand out relevance many times its own)
    alpha_beta: R_i = alpha sum_j z+_ij r_j / z+_j - beta sum_j z-_ij r_j / z-_j, beta = alpha - 1, with
                z+_ij the positive contributions x_i w_ji (x+ w+ and x- w-) and z-_ij the negative ones; the bias
                takes none (Chefer's code)
    """
    weight = weight.to(x)
    if rule == "epsilon":
        z = x @ weight.T + (0 if bias is None else bias.to(x))
        return x * (_divide(r, z, eps) @ weight)
    xp, xn = x.clamp(min=0), x.clamp(max=0)
    wp, wn = weight.clamp(min=0), weight.clamp(max=0)

    def share(w_for_xp: torch.Tensor, w_for_xn: torch.Tensor) -> torch.Tensor:
        s = _divide(r, xp @ w_for_xp.T + xn @ w_for_xn.T, eps)
        return xp * (s @ w_for_xp) + xn * (s @ w_for_xn)

    out = alpha * share(wp, wn)
    beta = alpha - 1.0
    if beta:
        out = out - beta * share(wn, wp)
    return out


def add_relevance(a: torch.Tensor, b: torch.Tensor, r: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """z-rule of y = a + b: each term takes its share a / y, b / y of r."""
    s = _divide(r, a + b, eps)
    return a * s, b * s


def matmul_relevance(a: torch.Tensor, b: torch.Tensor, r: torch.Tensor, eps: float
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """z-rule of y = a @ b (gradient x input), each operand halved as in Chefer's attention relprop: both
    operands of a bilinear product receive all of r, so half each keeps the total."""
    s = _divide(r, a @ b, eps)
    return a * (s @ b.transpose(-2, -1)) / 2, b * (a.transpose(-2, -1) @ s) / 2


@dataclass
class BlockRecord:
    x_in: torch.Tensor | None = None     # B x T x C, the block's input (residual stream)
    n1: torch.Tensor | None = None       # norm1 output = qkv input
    qkv: torch.Tensor | None = None      # qkv output, B x T x 3C
    attn: torch.Tensor | None = None     # softmax attention, B x H x T x T
    proj_in: torch.Tensor | None = None  # proj input (after attn.norm)
    branch1: torch.Tensor | None = None  # attention branch after ls1
    n2: torch.Tensor | None = None       # norm2 output = fc1 input
    h: torch.Tensor | None = None        # fc2 input (after GELU)
    branch2: torch.Tensor | None = None  # MLP branch after ls2


@dataclass
class Recording:
    logits: torch.Tensor
    blocks: list[BlockRecord]
    x0_pre: torch.Tensor            # tokens before norm_pre (after the position embedding), B x T x C
    patches: torch.Tensor           # patch embedding output, B x N x C
    final: torch.Tensor             # final norm output, B x T x C (input to pooling)
    head_in: torch.Tensor           # head input, B x C


def _vit(model: nn.Module) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    net = getattr(model, "net", model)
    if not isinstance(net, VisionTransformer):
        raise ScanbenchError("LRP needs a timm VisionTransformer (a ViT backbone)")
    for blk in net.blocks:
        mlp, attn = getattr(blk, "mlp", None), getattr(blk, "attn", None)
        if not all(hasattr(mlp, a) for a in ("fc1", "act", "fc2")) or not hasattr(attn, "qkv") \
                or getattr(attn, "gate", None) is not None:
            raise ScanbenchError("LRP supports timm ViT blocks with a fused qkv Linear and a Linear-GELU-Linear "
                                 "MLP; this backbone's blocks differ")
    if not isinstance(net.head, nn.Linear):
        raise ScanbenchError("LRP explains a class logit of a Linear head; this ViT has none (a bare feature "
                             "extractor such as DINO's needs a trained head first)")
    if net.global_pool not in ("token", "avg"):
        raise ScanbenchError(f"LRP supports CLS-token or average pooling, not global_pool={net.global_pool!r}")
    return net


def record(model: nn.Module, images01: torch.Tensor) -> Recording:
    """One batched forward pass, recording the activations every relevance rule needs."""
    net = _vit(model)
    recs = [BlockRecord() for _ in net.blocks]
    store: dict[str, torch.Tensor] = {}
    handles = []

    def keep(obj, name, use_input=False):
        def hook(_m, inp, out):
            setattr(obj, name, (inp[0] if use_input else out).detach()) if not isinstance(obj, dict) \
                else obj.__setitem__(name, (inp[0] if use_input else out).detach())
        return hook

    for blk, rec in zip(net.blocks, recs):
        a = blk.attn
        handles += [blk.register_forward_hook(keep(rec, "x_in", True)),
                    a.qkv.register_forward_hook(keep(rec, "n1", True)),
                    a.qkv.register_forward_hook(keep(rec, "qkv")),
                    a.proj.register_forward_hook(keep(rec, "proj_in", True)),
                    blk.ls1.register_forward_hook(keep(rec, "branch1")),
                    blk.mlp.fc1.register_forward_hook(keep(rec, "n2", True)),
                    blk.mlp.fc2.register_forward_hook(keep(rec, "h", True)),
                    blk.ls2.register_forward_hook(keep(rec, "branch2"))]
    handles += [net.patch_embed.register_forward_hook(keep(store, "patches")),
                net.norm_pre.register_forward_hook(keep(store, "x0_pre", True)),
                net.norm.register_forward_hook(keep(store, "final")),
                net.head.register_forward_hook(keep(store, "head_in", True))]
    try:
        with torch.no_grad(), AttentionRecorder(model) as attn_rec:
            logits = model(images01)
            for rec, a in zip(recs, attn_rec.attn):
                rec.attn = a.detach()
    finally:
        for h in handles:
            h.remove()
    patches = store["patches"]
    return Recording(logits=logits, blocks=recs, x0_pre=store["x0_pre"],
                     patches=patches.reshape(patches.shape[0], -1, patches.shape[-1]),
                     final=store["final"], head_in=store["head_in"])


def _head_rows(model: nn.Module, net: nn.Module, classes: torch.Tensor) -> torch.Tensor:
    """The head's weight rows of the explained classes (TargetModel may restrict the head to a class subset)."""
    idx = classes
    ci = getattr(model, "class_indices", None)
    if ci is not None:
        idx = ci.to(classes.device)[classes]
    bias = None if net.head.bias is None else net.head.bias[idx]
    return net.head.weight[idx], bias


def _block_relevance(blk: nn.Module, rec: BlockRecord, r: torch.Tensor, rule: str, alpha: float, eps: float,
                     stop_at_attention: bool = False):
    """Relevance at the block's output -> at its input (or, with stop_at_attention, at its attention map)."""
    a = blk.attn
    x_in, branch1, branch2, h, n2, proj_in, n1, attn = (
        t.to(r.dtype) for t in (rec.x_in, rec.branch1, rec.branch2, rec.h, rec.n2, rec.proj_in, rec.n1, rec.attn))
    x_mid = x_in + branch1
    # x_out = x_mid + mlp branch
    r_mid, r_b2 = add_relevance(x_mid, branch2, r, eps)
    r_h = linear_relevance(h, blk.mlp.fc2.weight, r_b2, rule, alpha, eps, blk.mlp.fc2.bias)     # ls2, drop: unchanged
    r_n2 = linear_relevance(n2, blk.mlp.fc1.weight, r_h, rule, alpha, eps, blk.mlp.fc1.bias)     # GELU: unchanged
    r_mid = r_mid + r_n2                                                             # norm2: unchanged; fork: sum
    # x_mid = x_in + attention branch
    r_in, r_b1 = add_relevance(x_in, branch1, r_mid, eps)
    r_o = linear_relevance(proj_in, a.proj.weight, r_b1, rule, alpha, eps, a.proj.bias)      # ls1, attn.norm: unchanged
    b, t, c = r_o.shape
    nh, hd = a.num_heads, c // a.num_heads
    qkv = rec.qkv.reshape(b, t, 3, nh, hd).permute(2, 0, 3, 1, 4)
    q, k, v = (t.to(r.dtype) for t in (a.q_norm(qkv[0]), a.k_norm(qkv[1]), qkv[2]))
    r_o = r_o.reshape(b, t, nh, hd).transpose(1, 2)                                  # B x H x T x hd
    r_attn, r_v = matmul_relevance(attn, v, r_o, eps)
    if stop_at_attention:
        return r_attn
    # softmax: unchanged; scores = (q * scale) @ k^T
    r_q, r_kt = matmul_relevance(q * a.scale, k.transpose(-2, -1), r_attn, eps)
    r_qkv = torch.stack([r_q, r_kt.transpose(-2, -1), r_v]).permute(1, 3, 0, 2, 4).reshape(b, t, 3 * c)
    r_n1 = linear_relevance(n1, a.qkv.weight, r_qkv, rule, alpha, eps, a.qkv.bias)         # q/k norms: unchanged
    return r_in + r_n1                                                               # norm1: unchanged; fork: sum


def relevance(model: nn.Module, rec: Recording, classes: torch.Tensor, rule: str = "alpha_beta",
              alpha: float = 1.0, eps: float = 1e-6, output_relevance: torch.Tensor | None = None,
              last_attention_only: bool = False) -> dict[str, torch.Tensor]:
    """Walk the relevance of each image's class logit back through the recorded forward.

    output_relevance: B values put on the explained logits (default 1, Chefer's one-hot; the logits themselves
    give the classic LRP start, whose total every conserving rule keeps). Returns `tokens` (B x T x C, the
    relevance of the first block's input) and `patches` (B x N x C, the patch embeddings' share of it), or with
    last_attention_only `attention` (B x H x T x T, the relevance of the last block's attention map), in float64.
    """
    with torch.no_grad():    # the rules read the weights; no autograd graph is needed
        return _relevance(model, _vit(model), rec, classes, rule, alpha, eps, output_relevance,
                          last_attention_only)


def _relevance(model, net, rec, classes, rule, alpha, eps, output_relevance, last_attention_only):
    # float64: a residual add whose terms nearly cancel hands its branches large relevances of opposite sign,
    # which the fork adds back; in float32 the rounding of those terms swamps the relevance (seen on random ViTs)
    dt = torch.float64
    head_in = rec.head_in.to(dt)
    b = head_in.shape[0]
    r_out = (torch.ones(b, dtype=dt, device=head_in.device) if output_relevance is None
             else output_relevance.to(head_in))
    w, bias = _head_rows(model, net, classes)                                        # B x C, B
    r_pooled = head_relevance(head_in, w.to(dt), r_out, rule, alpha, eps, bias)
    # fc_norm, head_drop: unchanged; pooling -> tokens of the final norm's output (the norm: unchanged)
    n_prefix = int(getattr(net, "num_prefix_tokens", 1))
    final = rec.final.to(dt)
    r = torch.zeros_like(final)
    if net.global_pool == "token":
        r[:, 0] = r_pooled
    else:
        patches = final[:, n_prefix:]
        n = patches.shape[1]
        r[:, n_prefix:] = patches / n * _divide(r_pooled, patches.mean(1), eps).unsqueeze(1)
    for i in range(len(net.blocks) - 1, -1, -1):
        last = last_attention_only and i == len(net.blocks) - 1
        r = _block_relevance(net.blocks[i], rec.blocks[i], r, rule, alpha, eps, stop_at_attention=last)
        if last:
            return {"attention": r}
    # norm_pre: unchanged; the patch rows of x0 are patch embedding + position embedding
    x0_patch, patches = rec.x0_pre[:, n_prefix:].to(dt), rec.patches.to(dt)
    r_patches, _ = add_relevance(patches, x0_patch - patches, r[:, n_prefix:], eps)
    return {"tokens": r, "patches": r_patches}


def head_relevance(x: torch.Tensor, rows: torch.Tensor, r_out: torch.Tensor, rule: str, alpha: float,
                   eps: float, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The linear rule for one output per image (its class row): x, rows (B x C), r_out (B,) -> B x C.
    With one output, z+_i / z-_i are the positive / negative contributions x_i w_i themselves."""
    contrib = x * rows
    r = r_out.view(-1, 1)
    if rule == "epsilon":
        z = contrib.sum(1, keepdim=True) + (0 if bias is None else bias.to(x).view(-1, 1))
        return contrib * _divide(r, z, eps)
    pos, neg = contrib.clamp(min=0), contrib.clamp(max=0)
    out = alpha * pos * _divide(r, pos.sum(1, keepdim=True), eps)
    beta = alpha - 1.0
    if beta:
        out = out - beta * neg * _divide(r, neg.sum(1, keepdim=True), eps)
    return out


def patch_grid(r_patches: torch.Tensor) -> torch.Tensor:
    """B x N x C patch relevance -> B x g x g (summed over channels)."""
    b, n, _ = r_patches.shape
    g = int(round(n ** 0.5))
    if g * g != n:
        raise ScanbenchError(f"{n} patch tokens do not form a square grid")
    return r_patches.sum(-1).reshape(b, g, g)
