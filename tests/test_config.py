"""Bad params give one clear error naming the param; profiles load; the data root resolves."""
import copy

import pytest
import yaml

from scanbench.backbones import validate_backbone_params
from scanbench.config import REPO_ROOT, data_root, load_params
from scanbench.config import validate_params as validate_scalar_params
from scanbench.errors import ScanbenchError
from scanbench.explainers.base import validate_method_params
from scanbench.profile import use_profile

DEFAULT = yaml.safe_load((REPO_ROOT / "profiles" / "default.yaml").read_text())


@pytest.mark.parametrize("name", ["smoke", "default", "paper"])
def test_profiles_validate(name):
    params = load_params(REPO_ROOT / "profiles" / f"{name}.yaml")
    as_written = copy.deepcopy(params)
    assert validate_params(params) == as_written           # every stage's checks pass and change no value
    assert params["profile"] == name


def validate_params(params):
    """What the stages check between them: scalars (every stage), backbones (targets), methods (explain)."""
    validate_backbone_params(params)
    validate_scalar_params(params)
    validate_method_params(params)
    return params


@pytest.mark.parametrize("mutate, match", [
    (lambda p: p.update(alpha=0), "^alpha must be > 0"),
    (lambda p: p.update(alpha=-2), "^alpha must be > 0"),
    (lambda p: p.update(p=101), "^p must be a percentile"),
    (lambda p: p.update(p=-1), "^p must be a percentile"),
    (lambda p: p["ablation"].update(percentiles=[50, 120]), "ablation.percentiles"),
    (lambda p: p.update(backbones=["resnet_nope"]), "unknown backbone 'resnet_nope'"),
    (lambda p: p["explain"]["baselines"]["cnn"].append("gradcam_xx"), "unknown method 'gradcam_xx'"),
    (lambda p: p["explain"]["baselines"]["cnn"].append("rollout"), "does not apply to cnn"),
    (lambda p: p["families"].update(cnn=[]), "families.cnn"),
])
def test_bad_params(mutate, match):
    params = copy.deepcopy(DEFAULT)
    mutate(params)
    with pytest.raises(ScanbenchError, match=match):
        validate_params(params)


def test_data_root_missing(tmp_path, monkeypatch):
    with pytest.raises(ScanbenchError, match="data.root"):
        data_root({"data": {"root": str(tmp_path / "missing")}})
    assert data_root({"data": {"root": str(tmp_path)}}) == tmp_path


def test_data_root_comes_from_params_only(tmp_path, monkeypatch):
    """$SCANBENCH_DATA_ROOT is not read: DVC cannot see an environment variable."""
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("SCANBENCH_DATA_ROOT", str(tmp_path / "env"))
    assert data_root({"data": {"root": str(tmp_path)}}) == tmp_path
    with pytest.raises(ScanbenchError, match="no data root"):
        data_root({"data": {}})


def test_use_profile(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "smoke.yaml").write_text("profile: smoke\n")
    use_profile("smoke", tmp_path)
    assert (tmp_path / "params.yaml").read_text() == "profile: smoke\n"
    with pytest.raises(ScanbenchError, match="unknown profile"):
        use_profile("huge", tmp_path)


@pytest.mark.parametrize("name", ["smoke", "default", "paper"])
def test_profiles_run_the_centre_prior_beside_random(name, tmp_path):
    """The centre prior is the second calibration row wherever the random map runs, with its sigma, and every
    baseline has its explain.<method> section in the params the profile gives (the explain stages' params key)."""
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / f"{name}.yaml").write_text((REPO_ROOT / "profiles" / f"{name}.yaml").read_text())
    params = load_params(use_profile(name, tmp_path)[0])
    ex = params["explain"]
    for family, methods in ex["baselines"].items():
        assert methods[methods.index("random") + 1] == "centre", (name, family)
        assert all(m in ex for m in methods), (name, family, [m for m in methods if m not in ex])
    assert params["timing"]["methods"][params["timing"]["methods"].index("random") + 1] == "centre"
    assert ex["centre"] == {"sigma": 0.25}


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.update(backbones=["resnet_nope"]),
     "backbones lists unknown backbone 'resnet_nope'"),
    (lambda p: p.update(backbones=["effnet_lite00"]),
     "backbones lists unknown backbone 'effnet_lite00' (did you mean effnet_lite0?)"),
    (lambda p: p["ablation"].update(backbones=["vit_hybrid_lite0", "vit_tiny_convstem"]),
     "ablation.backbones lists vit_tiny_convstem, which is not in backbones (effnet_lite0, vit_hybrid_lite0)"),
    (lambda p: p["scan"].update(layers=["default", "alt9"]),
     "scan.layers: backbone effnet_lite0 has no layer 'alt9'"),
    (lambda p: p["ablation"].update(layers=["default", "deep"]),
     "ablation.layers: backbone vit_hybrid_lite0 has no layer 'deep'"),
    (lambda p: p["explain"]["baselines"].update(cnn=["gradcm"]),
     "explain.baselines.cnn lists unknown method 'gradcm' (did you mean gradcam?)"),
    (lambda p: p["sanity"]["methods"].update(cnn=["scan", "rollout"]),
     "sanity.methods.cnn lists method 'rollout', which does not apply to cnn backbones"),
    (lambda p: p["timing"].update(methods=["scan", "lmie"]),
     "timing.methods lists unknown method 'lmie' (did you mean lime?)"),
    (lambda p: p["timing"].update(n_images_per_method={"rsie": 4}),
     "timing.n_images_per_method lists unknown method 'rsie' (did you mean rise?)"),
])
def test_every_name_is_checked_naming_its_key(mutate, message):
    from scanbench.param_checks import check_all_params

    params = copy.deepcopy(DEFAULT)
    mutate(params)
    with pytest.raises(ScanbenchError) as info:
        check_all_params(params)
    assert str(info.value).startswith(message), str(info.value)


def test_a_misspelt_backbone_is_named_as_such_not_as_an_ablation_entry():
    """`-S backbones=[resnet_nope]` leaves ablation.backbones naming the old backbone: the message is about the
    unknown backbone (the key that is wrong)."""
    from scanbench.param_checks import check_all_params

    params = copy.deepcopy(DEFAULT)
    params["backbones"] = ["resnet_nope"]
    with pytest.raises(ScanbenchError, match=r"^backbones lists unknown backbone 'resnet_nope' .*; known: "):
        check_all_params(params)


@pytest.mark.parametrize("name", ["smoke", "default", "paper"])
def test_profiles_pass_every_name_check(name):
    from scanbench.param_checks import check_all_params

    check_all_params(load_params(REPO_ROOT / "profiles" / f"{name}.yaml"))
