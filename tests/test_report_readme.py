"""reports/README.md says what the run was: a warning when its models are too weak, deviations worded from the
params and the targets actually used."""
from __future__ import annotations

import json

from scanbench.report.readme import TOP1_FLOOR, _fitted_head, deviations, weak_model_warning


def test_smoke_profile_is_flagged_not_for_conclusions():
    block = weak_model_warning("smoke", {"effnet_lite0": {"val_top1": 96.7}})
    assert block and "Not for conclusions" in block[0] and "`smoke` profile" in block[0]


def test_a_weak_target_is_named_with_its_top1():
    block = weak_model_warning("default", {"effnet_lite0": {"val_top1": 99.3}, "vit_x": {"val_top1": 55.3}})
    assert "`vit_x` reaches 55.30% val top-1" in block[0] and "effnet_lite0" not in block[0]


def test_strong_targets_on_the_default_profile_get_no_warning():
    assert weak_model_warning("default", {"a": {"val_top1": TOP1_FLOOR + 1}, "b": {"val_top1": None}}) == []


def test_deviation_names_a_fitted_head_instead_of_restricted_imagenet_logits(tmp_path):
    params = {"backbones": ["effnet_lite0"], "data": {"root": "mydata"}, "scan": {}, "explain": {}}
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "effnet_lite0.json").write_text(json.dumps({"val_top1": 90.0, "head": {"kind": "x"}}))
    assert _fitted_head(tmp_path, "effnet_lite0") and not _fitted_head(tmp_path, "other")
    fitted = " ".join(deviations(params, ["effnet_lite0"]))
    plain = " ".join(deviations(params))
    assert "fitted here" in fitted and "ImageNet logits restricted" not in fitted
    assert "ImageNet logits restricted to the data's classes" in plain and "Imagenette classes" not in plain


def test_training_set_size_is_worded_without_none():
    base = {"backbones": [], "data": {"root": "x"}, "explain": {}, "scan": {"steps": 10, "batch_size": 4}}
    every = " ".join(deviations({**base, "features": {"n_train": None}}))
    some = " ".join(deviations({**base, "features": {"n_train": 40}}))
    assert "on every training image " in every and "None" not in every and "image(s)" not in every
    assert "at most 40 training images" in some
