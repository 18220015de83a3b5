"""LRP and partial LRP on timm ViTs: relevance conservation (epsilon rule), a two-token one-block ViT against a
hand-written per-element computation of every rule, batch = per image, shapes, devices and bad params."""
import copy
import math

import numpy as np
import pytest
import torch

from scanbench.backbones import TargetModel
from scanbench.errors import ScanbenchError
from scanbench.explainers import make_explainer
from scanbench.explainers._lrp import record, relevance

METHODS = ["lrp", "partial_lrp"]
CLASSES = torch.tensor([3, 7, 1])


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def randomise(model, seed=0):
    """A copy of the model whose norms' affine terms, CLS token and position embedding are random too (timm
    initialises them to 0, 1 or near 0, which would hide a rule that mishandles them). The Linear biases stay 0
    as timm initialises them: under LRP-epsilon a bias keeps its share of the relevance, so only a bias-free
    model conserves it."""
    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.net.named_parameters():
            if "norm" in name or name in ("cls_token", "pos_embed"):
                p.copy_(p + 0.3 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("model_seed", [0, 1])
def test_epsilon_rule_conserves_relevance(tiny_vit, images, model_seed):
    """Starting from the class logit, the relevance of the first block's input sums to that logit (1%)."""
    model, _ = tiny_vit
    model = randomise(model, model_seed)
    rec = record(model, images)
    logit = rec.logits.gather(1, CLASSES.view(-1, 1)).squeeze(1).double()   # the relevance is float64
    r = relevance(model, rec, CLASSES, rule="epsilon", eps=1e-6, output_relevance=logit)
    total = r["tokens"].sum((1, 2))
    assert torch.allclose(total, logit, rtol=0.01, atol=1e-6), (total, logit)
    # the rule is linear in the start: Chefer's one-hot start (1) gives the same relevance divided by the logit
    r1 = relevance(model, rec, CLASSES, rule="epsilon", eps=1e-6)
    assert torch.allclose(r1["tokens"] * logit.view(-1, 1, 1), r["tokens"], rtol=1e-3,
                          atol=1e-4 * float(r["tokens"].abs().max()))


def test_recorded_forward_is_the_models(tiny_vit, images):
    model, _ = tiny_vit
    fused = [b.attn.fused_attn for b in model.net.blocks]
    rec = record(model, images)
    with torch.no_grad():
        assert torch.allclose(rec.logits, model(images), atol=1e-5)
    for m in model.modules():     # no hook outlives the call, fused attention restored
        assert not m._forward_hooks
    assert [b.attn.fused_attn for b in model.net.blocks] == fused


# ------------------------------------------------------------- two tokens, one block, every rule by hand

def two_token_vit(seed=0):
    """A timm ViT with one 8x8 patch (tokens: CLS + 1 patch), width 2, one head, one block, MLP width 4,
    3 classes, every parameter random; float64 so that the comparison is exact to rounding."""
    from timm.models.vision_transformer import VisionTransformer

    net = VisionTransformer(img_size=8, patch_size=8, embed_dim=2, depth=1, num_heads=1, mlp_ratio=2.0,
                            num_classes=3, class_token=True, global_pool="token")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return TargetModel(net, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)).double().eval()


def by_hand(model, x, c, rule, eps):
    """The forward and every relevance rule for one image, element by element in plain Python floats."""
    net = model.net
    blk = net.blocks[0]
    W = lambda m: m.weight.detach().double().numpy()      # noqa: E731
    B = lambda m: m.bias.detach().double().numpy()        # noqa: E731
    with torch.no_grad():
        patch = net.patch_embed(x[None].double())[0, 0].numpy()     # the patch embedding is not explained
    cls, pos = net.cls_token[0, 0].detach().numpy(), net.pos_embed[0].detach().numpy()
    T, C = 2, 2
    x0 = [[cls[d] + pos[0][d] for d in range(C)], [patch[d] + pos[1][d] for d in range(C)]]

    def ln(rows, m):
        g, b = W(m), B(m)
        out = []
        for row in rows:
            mu = sum(row) / len(row)
            var = sum((v - mu) ** 2 for v in row) / len(row)
            out.append([(v - mu) / math.sqrt(var + m.eps) * g[i] + b[i] for i, v in enumerate(row)])
        return out

    def lin(rows, m):
        w, b = W(m), B(m)
        return [[sum(row[i] * w[j][i] for i in range(len(row))) + b[j] for j in range(w.shape[0])] for row in rows]

    def div(r, z):
        return 0.0 if z == 0 else r / (z + (eps if z >= 0 else -eps))

    def lin_rel(rows, m, rel):
        """Relevance of a Linear layer's outputs onto its inputs (epsilon: the bias in z; alpha-beta: left out)."""
        w, b = W(m), B(m)
        out = [[0.0] * len(row) for row in rows]
        for t, row in enumerate(rows):
            for j in range(w.shape[0]):
                contrib = [row[i] * w[j][i] for i in range(len(row))]
                if rule == "epsilon":
                    z = sum(contrib) + b[j]
                    for i in range(len(row)):
                        out[t][i] += contrib[i] * div(rel[t][j], z)
                else:   # alpha = 1, beta = 0: the positive contributions only
                    z = sum(v for v in contrib if v > 0)
                    for i in range(len(row)):
                        out[t][i] += max(contrib[i], 0.0) * div(rel[t][j], z)
        return out

    n1 = ln(x0, blk.norm1)
    qkv = lin(n1, blk.attn.qkv)
    q = [r[0:2] for r in qkv]
    k = [r[2:4] for r in qkv]
    v = [r[4:6] for r in qkv]
    scale = blk.attn.scale
    s = [[sum(q[t][d] * scale * k[u][d] for d in range(C)) for u in range(T)] for t in range(T)]
    a = [[math.exp(s[t][u]) / sum(math.exp(s[t][w]) for w in range(T)) for u in range(T)] for t in range(T)]
    o = [[sum(a[t][u] * v[u][d] for u in range(T)) for d in range(C)] for t in range(T)]
    b1 = lin(o, blk.attn.proj)
    x_mid = [[x0[t][d] + b1[t][d] for d in range(C)] for t in range(T)]
    n2 = ln(x_mid, blk.norm2)
    u_ = lin(n2, blk.mlp.fc1)
    h = [[0.5 * z * (1 + math.erf(z / math.sqrt(2))) for z in row] for row in u_]
    b2 = lin(h, blk.mlp.fc2)
    x_out = [[x_mid[t][d] + b2[t][d] for d in range(C)] for t in range(T)]
    f = ln(x_out, net.norm)
    logit = sum(f[0][i] * W(net.head)[c][i] for i in range(C)) + B(net.head)[c]

    # relevance: 1 on the class (Chefer's start); head -> CLS token of the final norm (norm: unchanged)
    contrib = [f[0][i] * W(net.head)[c][i] for i in range(C)]
    if rule == "epsilon":
        r_f0 = [contrib[i] * div(1.0, sum(contrib) + B(net.head)[c]) for i in range(C)]
    else:
        r_f0 = [max(contrib[i], 0) * div(1.0, sum(v for v in contrib if v > 0)) for i in range(C)]
    r_out = [r_f0, [0.0, 0.0]]
    # x_out = x_mid + b2 (z-rule)
    r_mid = [[x_mid[t][d] * div(r_out[t][d], x_out[t][d]) for d in range(C)] for t in range(T)]
    r_b2 = [[b2[t][d] * div(r_out[t][d], x_out[t][d]) for d in range(C)] for t in range(T)]
    r_n2 = lin_rel(n2, blk.mlp.fc1, lin_rel(h, blk.mlp.fc2, r_b2))
    r_mid = [[r_mid[t][d] + r_n2[t][d] for d in range(C)] for t in range(T)]
    # x_mid = x0 + b1
    r_x0 = [[x0[t][d] * div(r_mid[t][d], x_mid[t][d]) for d in range(C)] for t in range(T)]
    r_b1 = [[b1[t][d] * div(r_mid[t][d], x_mid[t][d]) for d in range(C)] for t in range(T)]
    r_o = lin_rel(o, blk.attn.proj, r_b1)
    # o = a v: each operand half
    r_a = [[sum(a[t][u] * v[u][d] * div(r_o[t][d], o[t][d]) for d in range(C)) / 2 for u in range(T)]
           for t in range(T)]
    r_v = [[sum(a[t][u] * v[u][d] * div(r_o[t][d], o[t][d]) for t in range(T)) / 2 for d in range(C)]
           for u in range(T)]
    # softmax unchanged; s = (q scale) k^T: each operand half
    r_q = [[sum(q[t][d] * scale * k[u][d] * div(r_a[t][u], s[t][u]) for u in range(T)) / 2 for d in range(C)]
           for t in range(T)]
    r_k = [[sum(q[t][d] * scale * k[u][d] * div(r_a[t][u], s[t][u]) for t in range(T)) / 2 for d in range(C)]
           for u in range(T)]
    r_qkv = [r_q[t] + r_k[t] + r_v[t] for t in range(T)]
    r_n1 = lin_rel(n1, blk.attn.qkv, r_qkv)
    r_x0 = [[r_x0[t][d] + r_n1[t][d] for d in range(C)] for t in range(T)]
    # the patch row of x0 = patch + position: the patch embedding's share
    r_patch = [patch[d] * div(r_x0[1][d], x0[1][d]) for d in range(C)]
    return {"logit": logit, "tokens": np.array(r_x0), "patches": np.array([r_patch]), "attention": np.array(r_a)}


@pytest.mark.parametrize("rule", ["epsilon", "alpha_beta"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_tokens_one_block_by_hand(rule, seed):
    model = two_token_vit(seed)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    classes = torch.tensor([0, 2])
    rec = record(model, x)
    full = relevance(model, rec, classes, rule=rule, eps=1e-9)
    last = relevance(model, rec, classes, rule=rule, eps=1e-9, last_attention_only=True)
    for i in range(2):
        ref = by_hand(model, x[i], int(classes[i]), rule, 1e-9)
        assert abs(float(rec.logits[i, classes[i]]) - ref["logit"]) < 1e-9
        scale = max(1.0, float(np.abs(ref["tokens"]).max()))
        np.testing.assert_allclose(full["tokens"][i].numpy(), ref["tokens"], rtol=1e-7, atol=1e-9 * scale)
        np.testing.assert_allclose(full["patches"][i].numpy(), ref["patches"], rtol=1e-7, atol=1e-9 * scale)
        np.testing.assert_allclose(last["attention"][i, 0].numpy(), ref["attention"], rtol=1e-7,
                                   atol=1e-9 * scale)


def test_maps_from_the_relevance(tiny_vit, images):
    """lrp: the patch share summed over channels on the grid; partial_lrp: the positive last-block attention
    relevance, mean over heads, CLS row over the patches."""
    model, spec = tiny_vit
    rec = record(model, images)
    full = relevance(model, rec, CLASSES, rule="alpha_beta")
    last = relevance(model, rec, CLASSES, rule="alpha_beta", last_attention_only=True)["attention"]
    g = spec.grid
    lrp = make_explainer("lrp", model, spec)._explain(images, CLASSES)
    plrp = make_explainer("partial_lrp", model, spec)._explain(images, CLASSES)
    assert torch.allclose(lrp, full["patches"].sum(-1).reshape(3, g, g))
    assert torch.allclose(plrp, last.clamp(min=0).mean(1)[:, 0, 1:].reshape(3, g, g))


# ------------------------------------------------------------- the Explainer interface

@pytest.mark.parametrize("method", METHODS)
def test_batch_equals_single(tiny_vit, images, method):
    model, spec = tiny_vit
    ex = make_explainer(method, model, spec, batch_size=3)
    batched = ex._explain(images, CLASSES)
    single = torch.cat([ex._explain(images[i:i + 1], CLASSES[i:i + 1]) for i in range(3)])
    # The forward in float32 differs between batch shapes by rounding (~1e-7); the z-rule divisions of LRP
    # amplify that (measured: up to 2.6e-4 of the map's maximum after 3 blocks), so a bound at 1e-3 of the scale.
    assert torch.allclose(batched, single, rtol=1e-3, atol=1e-3 * float(single.abs().max()))
    maps = ex.explain(images, CLASSES)
    one_by_one = torch.cat([ex.explain(images[i:i + 1], CLASSES[i:i + 1]) for i in range(3)])
    assert torch.allclose(maps, one_by_one, atol=1e-3)


@pytest.mark.parametrize("method", METHODS)
def test_shape_range_device_and_class(tiny_vit, images, method):
    model, spec = tiny_vit
    ex = make_explainer(method, model, spec)
    maps = ex.explain(images, CLASSES)
    assert maps.shape == (3, 32, 32) and maps.device == images.device and maps.dtype == torch.float32
    assert maps.min() >= 0 and maps.max() <= 1 and not torch.allclose(maps[0], maps[1])
    a = ex._explain(images[:1], torch.tensor([0]))
    b = ex._explain(images[:1], torch.tensor([5]))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("method", METHODS)
def test_epsilon_rule_from_params(tiny_vit, images, method):
    """explain.<method>: {rule: epsilon, epsilon: ...} reaches the explainer through the factory."""
    from scanbench.explainers.factory import explainer_from_params

    model, spec = tiny_vit
    params = {"seed": 0, "explain": {"batch_size": 4, method: {"rule": "epsilon", "epsilon": 1e-6}}}
    ex = explainer_from_params(method, model, spec, params)
    assert (ex.rule, ex.epsilon) == ("epsilon", 1e-6)
    default = make_explainer(method, model, spec)
    assert default.rule == "alpha_beta" and not torch.allclose(ex._explain(images, CLASSES),
                                                               default._explain(images, CLASSES))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad, key", [({"rule": "z_plus"}, "rule"), ({"epsilon": 0}, "epsilon"),
                                      ({"alpha": 0.5}, "alpha"), ({"epsilon": "small"}, "epsilon")])
def test_bad_params_one_line(tiny_vit, method, bad, key):
    model, spec = tiny_vit
    with pytest.raises(ScanbenchError, match=rf"explain\.{method}\.{key}"):
        make_explainer(method, model, spec, **bad)


@pytest.mark.parametrize("method", METHODS)
def test_not_for_cnn(tiny_cnn, method):
    model, spec = tiny_cnn
    with pytest.raises(ScanbenchError, match="does not apply to cnn"):
        make_explainer(method, model, spec)


@pytest.mark.parametrize("kwargs", [
    {"global_pool": "avg", "class_token": False, "fc_norm": False},    # average pooling, no CLS token
    {"init_values": 0.5, "qkv_bias": False},                            # LayerScale, bias-free qkv
    {"no_embed_class": True, "reg_tokens": 2},                         # DeiT-3 position embedding, registers
])
def test_timm_variants_conserve(kwargs):
    """Other timm ViT options go through the same rules: the epsilon rule conserves the logit within 1%."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    net = VisionTransformer(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2, num_classes=5,
                            **kwargs)
    with torch.no_grad():   # timm starts some prefix tokens at ~1e-6: their near-zero scores would let epsilon
        for p in (net.cls_token, net.reg_token):     # absorb relevance, as the rule means to; trained ones are not
            if p is not None:
                p.normal_()
    model = TargetModel(net, (0.5,) * 3, (0.5,) * 3).eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    classes = torch.tensor([1, 4])
    rec = record(model, x)
    with torch.no_grad():
        assert torch.allclose(rec.logits, model(x), atol=1e-5)
    logit = rec.logits.gather(1, classes.view(-1, 1)).squeeze(1).double()
    r = relevance(model, rec, classes, rule="epsilon", eps=1e-6, output_relevance=logit)
    assert torch.allclose(r["tokens"].sum((1, 2)), logit, rtol=0.01, atol=1e-6)
    assert r["patches"].shape == (2, 16, 16)


def test_partial_lrp_needs_a_cls_token():
    from timm.models.vision_transformer import VisionTransformer

    from scanbench.backbones import BackboneSpec

    net = VisionTransformer(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2, num_classes=5,
                            global_pool="avg", class_token=False)
    model = TargetModel(net, (0.5,) * 3, (0.5,) * 3).eval()
    spec = BackboneSpec(name="t", family="vit", input_size=16, grid=4, scan_layer="net.blocks.0",
                        gradcam_layer="net.blocks.0.norm1", layers={})
    x = torch.rand(1, 3, 16, 16)
    assert make_explainer("lrp", model, spec).explain(x).shape == (1, 16, 16)
    with pytest.raises(ScanbenchError, match="no CLS token"):
        make_explainer("partial_lrp", model, spec).explain(x)
    net.reset_classifier(0)      # a bare feature extractor: no class logit to explain
    with pytest.raises(ScanbenchError, match="Linear head"):
        make_explainer("lrp", model, spec).explain(x, torch.tensor([0]))
