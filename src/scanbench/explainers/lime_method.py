"""LIME (Ribeiro et al. 2016) through the `lime` package: quickshift superpixels, num_samples random
on/off patterns (off = the superpixel's mean colour), a weighted ridge fit per class. The map paints each
superpixel with its weight for the explained class (signed, as fitted). Every image gets a fresh,
identically seeded explainer, so a map depends only on the image, the class and the seed."""
from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import torch

from ..errors import ScanbenchError
from ..probabilities import class_probs
from ._forward import model_forward
from .base import Explainer, MethodSettings, register_explainer


@contextlib.contextmanager
def _quiet_lime():
    """lime 0.2.0.1 wraps its sampling loop in tqdm with no switch; silence it for the call only
    (one bar per image would bury the stage's own progress bar)."""
    import lime.lime_image as li

    saved = li.tqdm
    li.tqdm = lambda it, *a, **k: it
    try:
        yield
    finally:
        li.tqdm = saved


@register_explainer("lime", families=("cnn", "vit"), label="LIME", order=110, forward_only=True)
class LimeExplainer(Explainer):
    @dataclasses.dataclass(frozen=True)
    class Settings(MethodSettings):
        """explain.lime: `num_samples` on/off patterns per image, classified `batch_size` at a time."""
        num_samples: int = 1000
        batch_size: int = 50

        def check(self, method: str) -> None:
            if int(self.num_samples) < 2:
                raise ScanbenchError(f"explain.{method}.num_samples must be >= 2 (got {self.num_samples!r})")
            if int(self.batch_size) < 1:
                raise ScanbenchError(f"explain.{method}.batch_size must be >= 1 (got {self.batch_size!r})")

        def kwargs(self) -> dict:
            return {"num_samples": self.num_samples, "forward_batch_size": self.batch_size}

    def __init__(self, model, spec, num_samples: int = Settings.num_samples,
                 forward_batch_size: int = Settings.batch_size, engine=None,
                 kernel_size: float = 4, max_dist: float = 200, ratio: float = 0.2, **kwargs):
        super().__init__(model, spec, **kwargs)
        self.Settings(num_samples=num_samples, batch_size=forward_batch_size).check(self.name)
        self.num_samples = int(num_samples)
        self.forward_batch_size = int(forward_batch_size)
        self.engine = engine
        # lime's own quickshift defaults, stated so they are visible
        self.quickshift = dict(kernel_size=kernel_size, max_dist=max_dist, ratio=ratio)

    def _classifier_fn(self, batch: np.ndarray) -> np.ndarray:
        """lime's callback: N x H x W x 3 doubles in [0, 1] -> N x K probabilities."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).permute(0, 3, 1, 2)
        return class_probs(model_forward(self.model, self.engine), x).double().cpu().numpy()

    def explain_one(self, image01: torch.Tensor, cls: int) -> np.ndarray:
        return self.explain_classes(image01, [cls])[cls]

    def explain_classes(self, image01: torch.Tensor, classes: list[int]) -> dict[int, np.ndarray]:
        """One image's map for each of `classes`, from one set of samples: lime fits each label on its own, on
        the same seeded segments and samples, so each map is the one `explain_one` gives for that class alone."""
        from lime.lime_image import LimeImageExplainer
        from lime.wrappers.scikit_image import SegmentationAlgorithm

        image = image01.permute(1, 2, 0).double().cpu().numpy()
        # The quickshift seed is `random_seed` in old scikit-image and `rng` in new; lime's wrapper keeps
        # only the argument the installed version takes (it silently drops the other).
        segmenter = SegmentationAlgorithm("quickshift", random_seed=self.seed, rng=self.seed, **self.quickshift)
        explainer = LimeImageExplainer(random_state=self.seed)
        labels = tuple(dict.fromkeys(int(c) for c in classes))
        with _quiet_lime():
            exp = explainer.explain_instance(
                image, self._classifier_fn, labels=labels, top_labels=None, hide_color=None,
                num_features=100000, num_samples=self.num_samples, batch_size=self.forward_batch_size,
                segmentation_fn=segmenter, random_seed=self.seed)
        maps = {}
        for cls in labels:
            weights = np.zeros(int(exp.segments.max()) + 1)
            for segment, weight in exp.local_exp[cls]:
                weights[segment] = weight
            maps[cls] = weights[exp.segments]
        return maps

    def _explain(self, images01, classes):
        # a run of the same image (the grid pointing game explains each mosaic once per tile class) is sampled
        # and classified once, for all its classes
        maps = []
        for start, stop in _runs_of_equal_images(images01):
            per_class = self.explain_classes(images01[start], [int(c) for c in classes[start:stop]])
            maps += [torch.from_numpy(per_class[int(c)]).float() for c in classes[start:stop]]
        return torch.stack(maps).to(images01.device)


def _runs_of_equal_images(images: torch.Tensor) -> list[tuple[int, int]]:
    """(start, stop) of each run of consecutive equal images in a batch."""
    runs, start = [], 0
    for j in range(1, len(images) + 1):
        if j == len(images) or not torch.equal(images[j], images[start]):
            runs.append((start, j))
            start = j
    return runs
