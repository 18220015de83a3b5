"""Manifest building: RGB conversion, unreadable files skipped and reported, clear errors for bad roots."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scanbench.data import build_manifest, class_table, load_image, seeded_subset
from scanbench.errors import ScanbenchError


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    for split in ("train", "val"):
        for wnid in ("n01440764", "n02102040"):
            d = root / split / wnid
            d.mkdir(parents=True)
            rgb = (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)
            Image.fromarray(rgb).save(d / "a.JPEG")
            Image.fromarray(rgb[..., 0]).save(d / "gray.JPEG")            # grayscale
            Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")      # CMYK
    (root / "train" / "n01440764" / "broken.JPEG").write_bytes(b"not a jpeg at all")
    (root / "train" / "n01440764" / "notes.txt").write_text("ignored")
    return root


def test_manifest_converts_and_skips(tmp_path):
    root = _tree(tmp_path)
    df, report = build_manifest(root)
    assert len(df) == 12 and report.n_images == 12
    assert report.n_converted == 8                      # gray + cmyk, 2 classes x 2 splits
    assert [p for p, _ in report.unreadable] == ["train/n01440764/broken.JPEG"]
    assert set(df["split"]) == {"train", "val"}
    table = class_table(df)
    assert table["wnid"].tolist() == ["n01440764", "n02102040"]
    assert table["imagenet_index"].tolist() == [0, 217]      # via timm's ImageNet metadata
    assert table["class_name"].tolist()[0] == "tench"
    img = load_image(root / "train/n01440764/gray.JPEG", 32)
    assert img.shape == (3, 32, 32) and 0 <= img.min() and img.max() <= 1
    assert torch.allclose(img[0], img[1])                     # grayscale replicated to RGB


def test_limit_per_class(tmp_path):
    df, _ = build_manifest(_tree(tmp_path), limit_per_class=2)
    assert df.groupby(["split", "label"]).size().max() == 2


def test_missing_root_is_one_line_error(tmp_path):
    with pytest.raises(ScanbenchError, match="data.root"):
        build_manifest(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScanbenchError, match="data.root"):
        build_manifest(tmp_path / "empty")


def test_unreadable_image_load_error(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"junk")
    with pytest.raises(ScanbenchError, match="cannot read image"):
        load_image(bad, 16)


def test_seeded_subset_is_deterministic_and_disjoint(tmp_path):
    df, _ = build_manifest(_tree(tmp_path))
    a = seeded_subset(df, "train", 3, seed=0)
    assert np.array_equal(a, seeded_subset(df, "train", 3, seed=0))
    b = seeded_subset(df, "train", None, seed=0, exclude=a)
    assert not set(a) & set(b)
    assert set(df.loc[a, "split"]) == {"train"}


def test_real_manifest_sample(data_root):
    df, report = build_manifest(data_root, limit_per_class=3)
    assert len(df) == 60 and not report.unreadable
    assert sorted(class_table(df)["imagenet_index"]) == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]


def test_imagenet_wnid_index_matches_timm_and_imports_neither_timm_nor_torch():
    """prepare's class list is read from timm's bundled files without importing timm (nor torch): the same
    table as timm.data.ImageNetInfo gives (it keeps prepare's start-up short)."""
    import subprocess
    import sys

    from timm.data import ImageNetInfo

    from scanbench.data import imagenet_wnid_index

    info = ImageNetInfo()
    expected = {info.index_to_label_name(i): (i, info.index_to_description(i).split(",")[0].strip())
                for i in range(info.num_classes())}
    assert imagenet_wnid_index() == expected and len(expected) == 1000
    code = ("import sys; import scanbench.stages.prepare; from scanbench.data import imagenet_wnid_index; "
            "imagenet_wnid_index(); print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr[-500:]
