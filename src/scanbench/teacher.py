"""Teacher cache for training the ViT: images pre-resized to the ViT's input size, and the pretrained
CNN's logits on the train images (computed once, at the CNN's own resolution)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from .data import load_image, to_uint8


def resize_images(root: Path, rel_paths: Sequence[str], size: int, desc: str = "resize") -> np.ndarray:
    out = np.empty((len(rel_paths), 3, size, size), dtype=np.uint8)
    for i, p in enumerate(tqdm(rel_paths, desc=desc, unit="img", mininterval=5)):
        out[i] = to_uint8(load_image(root / p, size))
    return out


def teacher_logits(forward, root: Path, rel_paths: Sequence[str], size: int, batch_size: int = 64) -> np.ndarray:
    """Logits of `forward` (a ForwardEngine or model) on each image at `size`."""
    outs = []
    for start in tqdm(range(0, len(rel_paths), batch_size), desc="teacher logits", unit="batch", mininterval=5):
        x = torch.stack([load_image(root / p, size) for p in rel_paths[start:start + batch_size]])
        with torch.inference_mode():
            outs.append(forward(x).float().cpu().numpy())
    return np.concatenate(outs)


def student_input_size(names: Sequence[str]) -> int:
    """The side at which the teacher stage caches images: the input size of the backbones trained in the pipeline
    (`names`), which must agree (one cache serves them all); else one line naming them."""
    from .backbones import get_backbone
    from .errors import ScanbenchError

    sizes = {name: get_backbone(name).input_size for name in names}
    if len(set(sizes.values())) != 1:
        raise ScanbenchError("the backbones trained in the pipeline take different input sizes ("
                             + ", ".join(f"{n}: {s} px" for n, s in sizes.items())
                             + "), but the teacher stage caches the images at one: list one of them in backbones")
    return next(iter(sizes.values()))
