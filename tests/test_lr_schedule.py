"""The shared learning-rate schedule and top-1 accuracy (scanbench.lr_schedule, scanbench.accuracy)."""
import math

import numpy as np
import pytest
import torch

from scanbench.accuracy import top1
from scanbench.errors import ScanbenchError
from scanbench.lr_schedule import check_schedule, lr_at, set_lr, two_percent_warmup


def test_cosine_is_bit_for_bit_each_loops_formula():
    """SCAN's loop: 2% warm-up, angle pi x elapsed / span; the ViT's: epochs of warm-up, angle pi x (elapsed / span).
    Each loop's rates are its formula's to the last bit (a last bit changes the trained weights)."""
    for total in (10, 37, 500, 4500):
        warm = two_percent_warmup(total)
        for s in range(total):
            scan = (1e-3 * (s + 1) / warm if s < warm
                    else 0.5 * 1e-3 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
            assert lr_at(s, total, 1e-3, "cosine", warm) == scan
            vit = (2e-3 * (s + 1) / 7 if s < 7
                   else 2e-3 * 0.5 * (1 + math.cos(math.pi * ((s - 7) / max(1, total - 7)))))
            assert lr_at(s, total, 2e-3, "cosine", 7, progress_first=True) == vit
    # the two orders do differ somewhere: which is why each loop names its own
    assert any(lr_at(s, 1000, 2e-3, "cosine", 20) != lr_at(s, 1000, 2e-3, "cosine", 20, progress_first=True)
               for s in range(1000))


def test_cosine_without_warm_up_is_torch_cosine_annealing_up_to_rounding():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=50)
    for s in range(50):
        assert lr_at(s, 50, 1e-2) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-18)
        opt.step()
        sched.step()
    set_lr(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [0.25]
    assert lr_at(0, 10, 0.1, "constant") == lr_at(9, 10, 0.1, "constant") == 0.1
    with pytest.raises(ScanbenchError, match=r"scan.lr_schedule must be constant or cosine \(got 'step'\)"):
        check_schedule("step", "scan.lr_schedule")


def test_top1_counts_argmax_hits_over_batches():
    logits = torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
    labels = np.array([1, 1, 1])
    assert top1(lambda x: x, [logits[:2], logits[2:]], labels) == 100.0 * 2 / 3
    assert top1(lambda x: x, [logits], labels) == 100.0 * 2 / 3
    assert top1(lambda x: x, [], np.array([], dtype=int)) == 0.0
