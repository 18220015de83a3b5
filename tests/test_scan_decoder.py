"""Decoder shapes for CNN grids and ViT token grids, the reconstruction size, CLS dropping, kwargs round trip,
tiny fixtures."""
from types import SimpleNamespace

import pytest
import torch

from scanbench.errors import ScanbenchError
from scanbench.features import reconstruction_size
from scanbench.hooks import features_and_grads
from scanbench.scan.decoder import build_decoder, decoder_from_kwargs, n_stages

TINY = {"scan": {"widths": {"cnn": [8, 8, 6, 6, 4, 4, 4], "vit": [8, 8, 6, 4, 4]}, "vit_blocks": 2,
                 "vit_heads": 2}}


def spec(family, size, grid=None):
    return SimpleNamespace(family=family, input_size=size, grid=grid, name="t")


@pytest.mark.parametrize("size,grid,stages", [(224, 7, 5), (224, 14, 4), (64, 8, 3), (64, 2, 5), (32, 4, 3)])
def test_stage_count(size, grid, stages):
    assert n_stages(size, grid) == stages


@pytest.mark.parametrize("size,grid,requested,expected", [(224, 7, None, 56), (64, 8, None, 64), (32, 4, None, 32),
                                                          (224, 14, None, 112), (224, 7, 224, 224), (224, 7, 28, 28)])
def test_reconstruction_size(size, grid, requested, expected):
    """Default: 8 px per feature cell (the blur's bandwidth), at most the input; scan.out_size overrides it."""
    assert reconstruction_size(size, grid, requested) == expected


@pytest.mark.parametrize("bad", [0, 6, 225, 56.0, "56", True])
def test_bad_out_size_is_one_clear_error(bad):
    with pytest.raises(ScanbenchError, match="scan.out_size"):
        reconstruction_size(224, 7, bad)


def test_cnn_decoder_7_to_56_by_default_and_224_on_request():
    torch.manual_seed(0)
    dec = build_decoder(spec("cnn", 224), (32, 7, 7), TINY).eval()
    assert dec.kwargs["widths"] == [8, 8, 6, 6] and dec.kwargs["out_size"] == 56   # stages + 1 widths
    # no transposed convolution (its stride-2 overlap painted a checkerboard): bilinear x2 per stage
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in dec.modules())
    assert sum(isinstance(m, torch.nn.Upsample) for m in dec.modules()) == 3
    with torch.no_grad():
        out = dec(torch.randn(2, 32, 7, 7))
    assert out.shape == (2, 4, 56, 56)
    assert out[:, 1:].abs().max() <= 1                          # tanh'd reconstruction
    paper = build_decoder(spec("cnn", 224), (32, 7, 7), {"scan": {**TINY["scan"], "out_size": 224}})
    assert paper.kwargs["widths"] == [8, 8, 6, 6, 4, 4]
    with torch.no_grad():
        assert paper.eval()(torch.randn(1, 32, 7, 7)).shape == (1, 4, 224, 224)


def test_old_checkpoint_kwargs_are_refused_clearly():
    with pytest.raises(ScanbenchError, match="re-train"):
        decoder_from_kwargs({"family": "cnn", "in_channels": 8, "grid": 7, "input_size": 224, "widths": [8] * 6})


def test_vit_decoder_drops_cls():
    torch.manual_seed(0)
    dec = build_decoder(spec("vit", 64, 8), (65, 24), TINY).eval()
    assert dec.kwargs["grid"] == 8 and dec.n_prefix == 1 and dec.kwargs["widths"] == [8, 8, 6, 4]
    x = torch.randn(2, 65, 24)
    with torch.no_grad():
        out = dec(x)
        x2 = x.clone()
        x2[:, 0] = 100.0                                        # the CLS token must not matter
        out2 = dec(x2)
    assert out.shape == (2, 4, 64, 64)
    assert torch.equal(out, out2)
    no_cls = build_decoder(spec("vit", 64, 8), (64, 24), TINY)
    assert no_cls.n_prefix == 0


def test_widths_too_short_and_bad_shapes():
    with pytest.raises(ScanbenchError, match="scan.widths.cnn"):
        build_decoder(spec("cnn", 224), (32, 7, 7), {"scan": {"widths": {"cnn": [8, 8, 8]}}})
    with pytest.raises(ScanbenchError, match="C x h x w"):
        build_decoder(spec("cnn", 224), (65, 24), TINY)
    with pytest.raises(ScanbenchError, match="tokens x dim"):
        build_decoder(spec("vit", 64, 8), (32, 8, 8), TINY)


@pytest.mark.parametrize("family,shape,size", [("cnn", (16, 4, 4), 32), ("vit", (17, 16), 32)])
def test_rebuild_from_kwargs(family, shape, size):
    torch.manual_seed(0)
    dec = build_decoder(spec(family, size, 4), shape, TINY).eval()
    twin = decoder_from_kwargs(dec.kwargs).eval()
    twin.load_state_dict(dec.state_dict())
    x = torch.randn(2, *shape)
    with torch.no_grad():
        assert torch.equal(dec(x), twin(x))


@pytest.mark.parametrize("fixture", ["tiny_cnn", "tiny_vit"])
def test_tiny_fixtures(fixture, request):
    model, sp = request.getfixturevalue(fixture)
    x = torch.rand(2, 3, sp.input_size, sp.input_size)
    _, F, G = features_and_grads(model, sp.scan_layer, x)
    dec = build_decoder(sp, F.shape[1:], TINY)
    assert dec.kwargs["grid"] == sp.grid
    size = reconstruction_size(sp.input_size, sp.grid)
    with torch.no_grad():
        out = dec.eval()(F)
    assert out.shape == (2, 4, size, size)
