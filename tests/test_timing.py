"""Timing logic (never asserts on speed): what is timed, how many entries, the summary arithmetic."""
import pytest
import torch

import scanbench.timing as timing
from scanbench.errors import ScanbenchError
from scanbench.explainers.base import make_explainer
from scanbench.timing import device_description, time_explainer, time_explainers, timing_summary


class Counting:
    def __init__(self):
        self.calls = []

    def explain(self, x, classes):
        self.calls.append((x.shape[0], classes.tolist()))
        return torch.zeros(x.shape[0], *x.shape[-2:])


def test_time_explainer_batches_and_warmup():
    images = torch.rand(10, 3, 8, 8)
    classes = torch.arange(10)
    ex = Counting()
    ms = time_explainer(ex, images, classes, batch_size=1)
    assert len(ms) == 10 and all(t >= 0 for t in ms)
    assert ex.calls[0] == (1, [0])                       # the warm-up call
    assert [c for _, c in ex.calls[1:]] == [[i] for i in range(10)]
    ex = Counting()
    ms = time_explainer(ex, images, classes, batch_size=4)
    assert len(ms) == 3                                  # batches of 4, 4, 2
    assert [n for n, _ in ex.calls] == [4, 4, 4, 2]      # warm-up + three timed batches
    ex = Counting()
    time_explainer(ex, images, classes, batch_size=4, warmup=False)
    assert len(ex.calls) == 3
    with pytest.raises(ScanbenchError):
        time_explainer(ex, images, classes, batch_size=0)


def test_time_explainer_divides_by_batch_size(monkeypatch):
    """A fake clock that advances 6 ms per explain call: per-image time = 6 / batch size."""
    now = [0.0]

    class Slow(Counting):
        def explain(self, x, classes):
            now[0] += 0.006
            return super().explain(x, classes)

    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])
    images = torch.rand(6, 3, 8, 8)
    assert time_explainer(Slow(), images, torch.zeros(6), batch_size=3) == pytest.approx([2.0, 2.0])
    assert time_explainer(Slow(), images, torch.zeros(6), batch_size=1) == pytest.approx([6.0] * 6)


def test_timing_summary():
    out = timing_summary({"gradcam": [1.0, 2.0, 3.0, 4.0, 5.0], "rise": [10.0, 10.0, 30.0]},
                         {"gradcam": [0.5, 0.7], "rise": [8.0]})
    assert out["gradcam"]["ms_per_image"] == 3.0 and out["gradcam"]["ms_iqr"] == [2.0, 4.0]
    assert out["gradcam"]["ms_per_image_batched"] == pytest.approx(0.6)
    assert out["gradcam"]["ratio_to_gradcam"] == 1.0
    assert out["gradcam"]["n_images"] == 5 and out["rise"]["n_images"] == 3
    assert out["rise"]["ratio_to_gradcam"] == pytest.approx(10.0 / 3.0)
    assert timing_summary({"rise": [1.0]}, {})["rise"]["ratio_to_gradcam"] is None


def test_real_explainer_runs(tiny_cnn):
    model, spec = tiny_cnn
    ex = make_explainer("random", model, spec, seed=0)
    images = torch.rand(3, 3, spec.input_size, spec.input_size)
    assert len(time_explainer(ex, images, torch.zeros(3), batch_size=2)) == 2
    assert "torch" in device_description()


def test_time_explainers_interleaves_and_caps():
    """Batch k of every method runs before batch k + 1 of any, each batch's order a seeded random permutation;
    a capped method stops at its cap."""
    calls = []

    class Logged:
        def __init__(self, name):
            self.name = name

        def explain(self, x, c):
            calls.append((self.name, x.shape[0]))

    images = torch.zeros(5, 3, 8, 8)
    ms = time_explainers({"a": Logged("a"), "b": Logged("b")}, images, torch.zeros(5), batch_size=2,
                         n_images={"b": 3})
    assert [len(ms["a"]), len(ms["b"])] == [3, 2]
    assert calls[:2] == [("a", 2), ("b", 2)]                                  # warm-ups first
    rounds = [sorted(calls[2:4]), sorted(calls[4:6]), calls[6:]]             # b's second batch: its one remaining image
    assert rounds == [[("a", 2), ("b", 2)], [("a", 2), ("b", 1)], [("a", 1)]]


def test_time_explainers_order_is_seeded_and_varies():
    """No method always follows the same one (a rotation would keep SCAN right after RISE), and the same seed
    gives the same order."""
    def order(seed):
        calls = []

        class Logged:
            def __init__(self, name):
                self.name = name

            def explain(self, x, c):
                calls.append(self.name)

        names = ["scan", "gradcam", "lime", "rise", "random"]
        time_explainers({n: Logged(n) for n in names}, torch.zeros(20, 3, 4, 4), torch.zeros(20), seed=seed)
        return calls[len(names):]                                            # past the warm-ups

    first = order(0)
    assert first == order(0) and first != order(1)
    before_scan = {first[i - 1] for i in range(1, len(first)) if first[i] == "scan"}
    assert len(before_scan) > 2
