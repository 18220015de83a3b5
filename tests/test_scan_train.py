"""Decoder training on a tiny feature set (real extraction path), checkpoints, the explainer, the stage CLI."""
import copy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from scanbench.errors import ScanbenchError
from scanbench.explainers import make_explainer
from scanbench.feature_extraction import extract_features
from scanbench.features import load_features
from scanbench.scan.decoder import build_decoder
from scanbench.scan.explainer import SCANExplainer
from scanbench.scan.train import curve_every, load_decoder, save_decoder, train_decoder

PARAMS = {"seed": 0, "alpha": 4, "p": 95, "scan": {"p_train_low": 70, "p_train_high": 100, "lr": 3e-3,
                              "steps": 8, "batch_size": 4, "lambda_c": 0.1,
                              "widths": {"cnn": [16, 12, 8, 8, 8, 8], "vit": [8, 8, 8, 8]},
                              "vit_blocks": 1, "vit_heads": 2}}


def image_paths(root: Path, n: int) -> list[str]:
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    return [str(sorted((root / "train" / c).iterdir())[0].relative_to(root)) for c in classes][:n]


def make_features(model, spec, root, out, n):
    rel = image_paths(root, n)
    extract_features(model, spec.scan_layer, root, rel, [0] * len(rel), spec.input_size, out, batch_size=8,
                     extra_meta={"backbone": spec.name})
    return load_features(out)


@pytest.fixture(scope="module")
def cnn_features(tiny_cnn, data_root, tmp_path_factory):
    model, spec = tiny_cnn
    base = tmp_path_factory.mktemp("feat_cnn")
    train = make_features(model, spec, data_root, base / "train", 8)
    holdout = make_features(model, spec, data_root, base / "holdout", 3)
    return train, holdout, base


@pytest.fixture(scope="module")
def vit_features(tiny_vit, data_root, tmp_path_factory):
    model, spec = tiny_vit
    base = tmp_path_factory.mktemp("feat_vit")
    return make_features(model, spec, data_root, base / "train", 4)


def test_training_decreases_loss_and_is_deterministic(tiny_cnn, cnn_features):
    _, spec = tiny_cnn
    train, holdout, _ = cnn_features
    assert train.F.dtype == np.float16
    dec, curves, summary = train_decoder(train, holdout, spec, PARAMS, alpha=4, seed=0, progress=False)
    losses = [c["loss"] for c in curves]
    assert [c["step"] for c in curves] == list(range(1, 9)) and all(np.isfinite(losses))   # a row per step
    assert [c["epoch"] for c in curves] == [1, 1, 2, 2, 3, 3, 4, 4]                        # 8 images, batch 4
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2])
    assert summary["final_loss"] == pytest.approx(np.mean(losses[-2:]))   # the last pass's mean
    _, curves2, _ = train_decoder(train, holdout, spec, PARAMS, alpha=4, seed=0, progress=False)
    assert [c["loss"] for c in curves2] == losses                   # same seed, same losses
    _, curves3, _ = train_decoder(train, holdout, spec, PARAMS, alpha=4, seed=1, epochs=1, progress=False)
    assert curves3[0]["loss"] != losses[0]
    assert summary["target_area"] == pytest.approx(0.2)
    assert 0 <= summary["val_confidence_area"] <= 1
    assert summary["layer_path"] == spec.scan_layer and summary["layer"] == "default"
    assert summary["n_train"] == 8 and summary["steps"] == 8 and summary["epochs"] == 4
    assert summary["widths"] == [16, 12, 8, 8] and summary["out_size"] == 16   # 8 px per cell of the 2 x 2 grid
    for key in ("loss_c", "loss_r", "conf_area", "recon_err", "recon_err_weighted"):
        assert np.isfinite(curves[-1][key])


@pytest.mark.parametrize("variant", ["alpha1", "no_mask", "no_blur", "sigmoid"])
def test_variants_train(tiny_cnn, cnn_features, variant):
    _, spec = tiny_cnn
    train, holdout, _ = cnn_features
    _, curves, summary = train_decoder(train, holdout, spec, PARAMS, alpha=4, variant=variant, epochs=1,
                                       n_train=4, progress=False)
    assert np.isfinite(curves[0]["loss"]) and summary["variant"] == variant
    assert summary["target_area"] == pytest.approx(0.5 if variant == "alpha1" else 0.2)


def test_bad_training_inputs(tiny_cnn, tiny_vit, cnn_features):
    train, holdout, _ = cnn_features
    with pytest.raises(ScanbenchError, match="alpha"):
        train_decoder(train, holdout, tiny_cnn[1], PARAMS, alpha=0, progress=False)
    with pytest.raises(ScanbenchError, match="backbone"):
        train_decoder(train, holdout, tiny_vit[1], PARAMS, alpha=4, progress=False)


def test_checkpoint_round_trip_and_wrong_backbone(tiny_cnn, cnn_features, tmp_path):
    _, spec = tiny_cnn
    train, holdout, _ = cnn_features
    dec, _, summary = train_decoder(train, holdout, spec, PARAMS, alpha=4, epochs=1, n_train=4, progress=False)
    path = tmp_path / "decoder.pt"
    save_decoder(path, dec, summary)
    loaded, meta = load_decoder(path, spec.name, spec.scan_layer)
    assert meta["backbone"] == spec.name and meta["layer"] == spec.scan_layer and meta["alpha"] == 4.0
    x = torch.from_numpy(np.asarray(train.F[:2], dtype=np.float32))
    with torch.no_grad():
        assert torch.equal(dec.eval()(x), loaded(x))
    with pytest.raises(ScanbenchError, match=r"'tiny_cnn'.*'vit_tiny_convstem'"):
        load_decoder(path, "vit_tiny_convstem")
    with pytest.raises(ScanbenchError, match=r"'net.layer4'.*'net.layer3'"):
        load_decoder(path, spec.name, "net.layer3")


def save_untrained(spec, feat_shape, path, variant="full"):
    torch.manual_seed(0)
    dec = build_decoder(spec, feat_shape, PARAMS)
    save_decoder(path, dec, {"backbone": spec.name, "layer": spec.scan_layer, "alpha": 4, "variant": variant})


@pytest.mark.parametrize("fixture,variant", [("tiny_cnn", "full"), ("tiny_vit", "full"), ("tiny_cnn", "no_mask"),
                                             ("tiny_vit", "sigmoid")])
def test_explainer_maps(fixture, variant, request, tmp_path):
    model, spec = request.getfixturevalue(fixture)
    x = torch.rand(3, 3, spec.input_size, spec.input_size, generator=torch.Generator().manual_seed(0))
    from scanbench.hooks import features_and_grads
    _, F, _ = features_and_grads(model, spec.scan_layer, x[:1])
    path = tmp_path / "decoder.pt"
    save_untrained(spec, F.shape[1:], path, variant)
    explainer = make_explainer("scan", model, spec, decoder_path=str(path), p=95, batch_size=2)
    maps = explainer.explain(x)
    assert maps.shape == (3, spec.input_size, spec.input_size)
    assert maps.min() >= 0 and maps.max() <= 1 and torch.isfinite(maps).all()
    maps2, recon = explainer.explain_with_reconstruction(x)
    assert torch.allclose(maps, maps2)
    assert recon.shape == x.shape and recon.min() >= 0 and recon.max() <= 1


def test_explainer_checks_layer_and_path(tiny_cnn, tmp_path):
    model, spec = tiny_cnn
    path = tmp_path / "decoder.pt"
    save_untrained(spec, (512, 2, 2), path)
    with pytest.raises(ScanbenchError, match="layer"):
        SCANExplainer(model, spec, decoder_path=str(path), layer="alt1")
    SCANExplainer(model, spec, decoder_path=str(path), layer="default")
    with pytest.raises(ScanbenchError, match="decoder_path"):
        SCANExplainer(model, spec)
    with pytest.raises(ScanbenchError, match="not found"):
        SCANExplainer(model, spec, decoder_path=str(tmp_path / "missing.pt"))


def test_vit_training_runs(tiny_vit, vit_features):
    _, spec = tiny_vit
    _, curves, summary = train_decoder(vit_features, None, spec, PARAMS, alpha=4, epochs=1, progress=False)
    assert np.isfinite(curves[0]["loss"]) and summary["val_confidence_area"] is None


def test_curves_are_step_level():
    """A row every few steps: at least ~100 rows in a run, at most CURVE_EVERY steps apart."""
    assert [curve_every(n) for n in (1, 10, 99, 100, 500, 1000, 4500, 100_000)] == [1, 1, 1, 1, 5, 10, 10, 10]
    assert -(-4500 // curve_every(4500)) >= 100 and -(-500 // curve_every(500)) >= 100


def test_stage_cli(tiny_cnn, cnn_features, tmp_path, monkeypatch, capsys):
    """The stage end to end on the tiny backbone (registered for the test), and its one-line alpha error."""
    from scanbench import backbones
    _, spec = tiny_cnn
    monkeypatch.setitem(backbones._REGISTRY, spec.name, spec)
    _, _, base = cnn_features
    params = copy.deepcopy(PARAMS)
    params["compute"] = {"device": "cpu", "threads": 1, "nproc": 1}   # keep the test session's one thread
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    from scanbench.stages import train_scan as stage
    out = tmp_path / "out"
    stage.main(["--backbone", spec.name, "--layer", "default", "--steps", "3", "--n-train", "4",
                "--features", str(base), "--params", str(tmp_path / "params.yaml"), "--out", str(out),
                "--no-progress", "--results", str(tmp_path / "res")])
    summary = yaml.safe_load((tmp_path / "res" / "summary.json").read_text())
    assert {"backbone", "alpha", "layer", "variant", "final_loss", "val_confidence_area", "target_area",
            "n_train", "steps", "epochs", "out_size", "widths"} <= set(summary)
    assert summary["alpha"] == 4 and summary["n_train"] == 4 and summary["steps"] == 3
    curves = pd.read_csv(tmp_path / "res" / "curves.csv")
    assert list(curves["step"]) == [1, 2, 3] and list(curves["epoch"]) == [1, 2, 3]   # 4 images = 1 batch of 4
    # wall times are run facts (logs/run_facts.json), never inside a DVC output
    assert "train_seconds" not in summary and "seconds" not in curves.columns
    load_decoder(out / "decoder.pt", spec.name, spec.scan_layer)

    monkeypatch.setattr(sys, "argv", ["train_scan.py", "--backbone", spec.name, "--layer", "default",
                                      "--alpha", "-1", "--params", str(tmp_path / "params.yaml"),
                                      "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit) as exit_info:
        stage.run_stage(stage.main)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "alpha" in err and len(err.splitlines()) == 1


def test_decoder_generalisation_separates_an_informed_decoder_from_a_blind_one():
    """A decoder that outputs the true target has skill 1; one that outputs the mean image has skill ~0."""
    import numpy as np
    import torch.nn as nn

    from scanbench.diagnostics import decoder_generalisation, mean_target
    from scanbench.features import FeatureSet
    from scanbench.scan.loss import make_target

    rng = np.random.default_rng(0)
    n, size, grid = 6, 16, 4
    images = rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)
    F = rng.normal(size=(n, 3, size, size)).astype(np.float16)
    fs = FeatureSet(F, np.abs(F), images, {})

    class Oracle(nn.Module):   # reads the image back out of its "features" (here: the images themselves)
        kwargs = {"grid": grid}

        def forward(self, x):
            t = make_target(torch.from_numpy(images[: x.shape[0]].astype(np.float32) / 255), grid)
            return torch.cat([torch.full_like(t[:, :1], 2.0), t], 1)

    class Blind(nn.Module):
        kwargs = {"grid": grid}

        def forward(self, x):
            m = mean_target(fs, grid, n)
            return torch.cat([torch.zeros(x.shape[0], 1, size, size), m.expand(x.shape[0], -1, -1, -1)], 1)

    good = decoder_generalisation(Oracle(), fs, fs, p=95, batch_size=n)
    blind = decoder_generalisation(Blind(), fs, fs, p=95, batch_size=n)
    assert good["recon_err"] < 1e-10 and good["recon_skill"] == pytest.approx(1.0)
    assert blind["recon_skill"] == pytest.approx(0.0, abs=1e-6)
    assert blind["conf_image_std"] == pytest.approx(0.0, abs=1e-7) and blind["conf_area"] == pytest.approx(0.5)
    # the same measures on the training images (here the same set): equal to the held-out ones
    assert good["train_recon_err"] == pytest.approx(good["recon_err"], abs=1e-10)
    assert blind["train_conf_area"] == pytest.approx(blind["conf_area"])
    assert good["train_conf_area"] == pytest.approx(good["conf_area"])


def test_training_rows_are_a_nested_seeded_subset_of_every_class():
    from scanbench.errors import ScanbenchError
    from scanbench.features import training_rows
    a, b = training_rows(9469, 1000, seed=0), training_rows(9469, 2000, seed=0)
    assert len(a) == 1000 and set(a) <= set(b) and np.all(np.diff(a) > 0)
    assert a.max() > 9000 and not np.array_equal(a, np.arange(1000))   # not the first (one-class) rows
    assert np.array_equal(training_rows(9469, None, 0), np.arange(9469))
    assert np.array_equal(training_rows(50, 80, 0), np.arange(50))
    assert not np.array_equal(training_rows(9469, 1000, seed=1), a)
    with pytest.raises(ScanbenchError, match="at least 1"):
        training_rows(10, 0, 0)


def test_step_count_and_learning_rate_schedule():
    from scanbench.errors import ScanbenchError
    from scanbench.lr_schedule import lr_at, two_percent_warmup
    from scanbench.scan.train import _steps
    assert _steps({"steps": 100}, None, None, n=50, bs=8) == 100
    assert _steps({"steps": 100}, 2, None, n=50, bs=8) == 14          # epochs given: 2 passes of 7 batches
    assert _steps({}, None, 5, n=50, bs=8) == 5
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ScanbenchError, match="scan.steps"):
            _steps({"steps": bad}, None, None, n=50, bs=8)
    assert lr_at(0, 1000, 1e-3, "constant") == lr_at(999, 1000, 1e-3, "constant") == 1e-3
    assert two_percent_warmup(1000) == 20 and two_percent_warmup(10) == 1
    lrs = [lr_at(s, 1000, 1e-3, "cosine", two_percent_warmup(1000)) for s in range(1000)]
    assert lrs[0] < lrs[19] == pytest.approx(1e-3) and lrs[-1] < 1e-5      # 2% warm-up, then decay to ~0
    assert all(x >= y for x, y in zip(lrs[20:], lrs[21:]))
