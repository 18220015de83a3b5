"""Attention-family explainers against a direct, per-image, per-head computation of each formula.

The reference runs the timm ViT by hand (its own attention code, one head at a time), so the attention
maps, pre-softmax scores and gradients come from neither scanbench.hooks nor the explainers.
"""
import math

import pytest
import torch

from scanbench.errors import ScanbenchError
from scanbench.explainers import make_explainer

METHODS = ["raw_attention", "rollout", "transformer_attribution", "ag_cam"]
CLASSES = torch.tensor([3, 7, 1])


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def manual_forward(model, x):
    """One image through the TargetModel's ViT, head by head. Returns logits and, per block, lists of
    per-head attention A_h (T x T, in the autograd graph) and pre-softmax scores."""
    net = model.net
    t = net.patch_embed((x - model.mean) / model.std)
    t = net.norm_pre(net.patch_drop(net._pos_embed(t)))
    attn, scores = [], []
    for blk in net.blocks:
        a = blk.attn
        n = blk.norm1(t)[0]                                   # T x C
        qkv = a.qkv(n)                                        # T x 3C
        c = n.shape[1]
        heads_out, block_attn, block_scores = [], [], []
        for h in range(a.num_heads):
            sl = slice(h * a.head_dim, (h + 1) * a.head_dim)
            q, k, v = qkv[:, sl], qkv[:, c + h * a.head_dim: c + (h + 1) * a.head_dim], qkv[:, 2 * c:][:, sl]
            s = (q @ k.T) / math.sqrt(a.head_dim)
            p = torch.softmax(s, dim=-1)
            block_scores.append(s)
            block_attn.append(p)
            heads_out.append(p @ v)
        out = a.proj(a.norm(torch.cat(heads_out, dim=1)))[None]
        t = t + blk.ls1(out)
        t = t + blk.ls2(blk.mlp(blk.norm2(t)))
        attn.append(block_attn)
        scores.append(block_scores)
    logits = net.forward_head(net.norm(t))
    return logits[0], attn, scores


def reference(method, model, x, c):
    """The method's formula for one image, written out with loops over blocks and heads."""
    with torch.enable_grad():
        logits, attn, scores = manual_forward(model, x[None])
        flat = [p for block in attn for p in block]
        grads_flat = torch.autograd.grad(logits[c], flat)
    n_heads = len(attn[0])
    grads = [list(grads_flat[i * n_heads:(i + 1) * n_heads]) for i in range(len(attn))]
    attn = [[p.detach() for p in block] for block in attn]
    scores = [[s.detach() for s in block] for block in scores]
    tokens = attn[0][0].shape[0]
    eye = torch.eye(tokens)
    if method == "raw_attention":
        row = sum(attn[-1][h][0] for h in range(n_heads)) / n_heads
    elif method == "rollout":
        r = eye.clone()
        for block in attn:
            a_bar = sum(block) / n_heads + eye
            for i in range(tokens):
                a_bar[i] = a_bar[i] / a_bar[i].sum()
            r = a_bar @ r
        row = r[0]
    elif method == "transformer_attribution":
        r = eye.clone()
        for block, gblock in zip(attn, grads):
            a_bar = sum(torch.relu(g * p) for p, g in zip(block, gblock)) / n_heads
            r = r + a_bar @ r
        row = r[0]
    elif method == "ag_cam":
        row = torch.zeros(tokens)
        for block, gblock, sblock in zip(attn, grads, scores):
            for h in range(n_heads):
                row = row + torch.relu(gblock[h][0]) * torch.sigmoid(sblock[h][0])
    g = int(math.isqrt(tokens - 1))
    return row[1:].reshape(g, g)


def test_manual_forward_matches_model(tiny_vit, images):
    model, _ = tiny_vit
    with torch.no_grad():
        ref = torch.stack([manual_forward(model, x[None])[0] for x in images])
        assert torch.allclose(ref, model(images), atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_matches_per_image_formula(tiny_vit, images, method):
    model, spec = tiny_vit
    ex = make_explainer(method, model, spec)
    raw = ex._explain(images, CLASSES)
    assert raw.shape == (3, spec.grid, spec.grid)
    for i in range(3):
        ref = reference(method, model, images[i], int(CLASSES[i]))
        assert torch.allclose(raw[i], ref, rtol=1e-4, atol=1e-6 * ref.abs().max().item()), method
    maps = ex.explain(images, CLASSES)
    assert maps.shape == (3, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    assert not torch.allclose(maps[0], maps[1])


@pytest.mark.parametrize("method", METHODS)
def test_batch_equals_single(tiny_vit, images, method):
    model, spec = tiny_vit
    ex = make_explainer(method, model, spec)
    batched = ex._explain(images, CLASSES)
    single = torch.cat([ex._explain(images[i:i + 1], CLASSES[i:i + 1]) for i in range(3)])
    # float32 across kernels (batched vs single, AVX2 vs AVX-512): an atol at the maps' own scale, never 0
    assert torch.allclose(batched, single, rtol=1e-5, atol=1e-5 * float(single.abs().max()))
    # After min-max the (random-init, nearly uniform) maps amplify float noise: a looser bound.
    batched = ex.explain(images, CLASSES)
    single = torch.cat([ex.explain(images[i:i + 1], CLASSES[i:i + 1]) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-3)


@pytest.mark.parametrize("method", ["transformer_attribution", "ag_cam"])
def test_class_sensitive(tiny_vit, images, method):
    model, spec = tiny_vit
    ex = make_explainer(method, model, spec)
    a = ex._explain(images[:1], torch.tensor([0]))
    b = ex._explain(images[:1], torch.tensor([5]))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("method", METHODS)
def test_not_for_cnn(tiny_cnn, method):
    model, spec = tiny_cnn
    with pytest.raises(ScanbenchError, match="does not apply to cnn"):
        make_explainer(method, model, spec)


def test_hooks_removed(tiny_vit, images):
    model, spec = tiny_vit
    make_explainer("ag_cam", model, spec).explain(images[:1])
    for m in model.modules():
        assert not m._forward_hooks
