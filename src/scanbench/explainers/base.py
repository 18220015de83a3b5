"""The one interface every explanation method implements, and the registry by name.

    explainer = make_explainer("gradcam", model, spec, **method_params)
    maps = explainer.explain(images01, classes)      # B x H x W, each map min-max scaled to [0, 1]

A subclass overrides `_explain` (like pytorch-grad-cam's `get_cam_weights` hook); `explain` handles
batching, upsampling to input resolution and normalisation, so all methods return maps alike.

A method is one file: its subclass, registered with `@register_explainer(name, families=, label=, order=, ...)`
(as timm's `register_model`), declares everything the rest of the code asks of it: the backbone families it
applies to, its label and place in the tables, whether it is a calibration row or needs only logits
(`forward_only`: the explain stage serves it with the forward engine), and its `Settings`, a dataclass of its
`explain.<name>` keys with their defaults and checks. The family lists, the params checks
(`validate_method_params`), the builder from params (`Explainer.params_kwargs`, factory.py) and the report's order,
labels and calibration rows are read from the registry (`registered_methods`).

Devices: an explainer runs where its model is (`self.device`, taken from the model's parameters as
pytorch-grad-cam's BaseCAM does); `explain` moves the images and classes there, `_explain` builds every tensor
on its input's device, and the maps come back on the device the images came in on.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones import FAMILIES, BackboneSpec
from ..compute import module_device
from ..config import ANY_NAME, PARAMS_SCHEMA, method_names, unknown_key_message
from ..errors import ScanbenchError


@dataclasses.dataclass(frozen=True)
class MethodSettings:
    """A method's `explain.<name>` section: each field is a key, with its default (a field without one must be
    given in params); `check` refuses an unusable value with one line naming `explain.<name>.<key>`. The base has
    no fields: a method without settings takes `{}`. Every method also takes the shared `seed` and
    `explain.batch_size` (`Explainer.params_kwargs`)."""

    def check(self, method: str) -> None:
        """Raise ScanbenchError naming the first unusable value (nothing to check here)."""

    def kwargs(self) -> dict[str, Any]:
        """The explainer's keyword arguments for these settings (by default each field under its own name)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The keys that have a default, with it: the section a profile gets where it names none."""
        return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}

    @classmethod
    def required(cls) -> list[str]:
        """The keys without a default: params must state them."""
        return [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]

    @classmethod
    def from_section(cls, method: str, section: Any) -> "MethodSettings":
        """Settings from the params section `explain.<method>` (None or absent: {}), checked."""
        section = {} if section is None else section
        where = f"explain.{method}"
        if not isinstance(section, Mapping):
            raise ScanbenchError(f"params: {where} is a section: it takes keys (the method's settings, {{}} for "
                                 f"none), not {section!r}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in section:
            if key not in known:
                raise ScanbenchError(unknown_key_message(f"{where}.{key}", str(key), known, where))
        for f in dataclasses.fields(cls):
            if f.name in cls.required() and f.name not in section:
                what = f.metadata.get("help", "")
                raise ScanbenchError(f"params: {where}.{f.name} is missing" + (f" ({what})" if what else ""))
        settings = cls(**section)
        settings.check(method)
        return settings


def normalize_maps(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-image min-max to [0, 1]; a constant map becomes all zeros."""
    b = maps.shape[0]
    flat = maps.reshape(b, -1).float()
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    out = (flat - lo) / (hi - lo).clamp_min(eps)
    out = torch.where((hi - lo) > eps, out, torch.zeros_like(out))
    return out.reshape(maps.shape)


def upsample_maps(maps: torch.Tensor, size: int) -> torch.Tensor:
    """B x h x w -> B x size x size, bilinear (no-op if already that size)."""
    if maps.shape[-1] == size and maps.shape[-2] == size:
        return maps
    return F.interpolate(maps.unsqueeze(1).float(), size=(size, size), mode="bilinear",
                         align_corners=False).squeeze(1)


class Explainer(ABC):
    """Base class: model + backbone entry in, `explain(images01, classes) -> maps` out.

    The class attributes below are the method's declaration; `register_explainer` sets all but `Settings`."""

    name: ClassVar[str] = ""
    families: ClassVar[tuple[str, ...]] = ()   # the backbone families it applies to
    label: ClassVar[str] = ""                  # its name in tables, figures and the README
    order: ClassVar[float] = 0                 # its place in tables and figures (ascending)
    calibration: ClassVar[bool] = False        # a calibration row: scored, but competes for no win or best baseline
    forward_only: ClassVar[bool] = False       # needs only logits: the stages serve it with the forward engine
    Settings: ClassVar[type[MethodSettings]] = MethodSettings   # its explain.<name> keys

    @classmethod
    def settings_from_params(cls, params: Mapping[str, Any]) -> MethodSettings:
        """This method's settings from params (`explain.<name>`), checked."""
        return cls.Settings.from_section(cls.name, (params.get("explain") or {}).get(cls.name))

    @classmethod
    def params_kwargs(cls, params: Mapping[str, Any], engine=None, decoder_path=None) -> dict[str, Any]:
        """The keyword arguments this method is built with under `params`: every method's `seed` and
        `explain.batch_size`, its settings, and the forward `engine` for a forward-only method (`decoder_path`:
        SCAN's, which overrides this)."""
        kwargs: dict[str, Any] = {"seed": int(params["seed"]), "batch_size": int(params["explain"]["batch_size"])}
        kwargs.update(cls.settings_from_params(params).kwargs())
        if cls.forward_only:
            kwargs["engine"] = engine
        return kwargs

    def __init__(self, model: nn.Module, spec: BackboneSpec, seed: int = 0, batch_size: int = 16,
                 **params: Any):
        self.model = model.eval()
        self.spec = spec
        self.seed = seed
        self.batch_size = batch_size
        self.params = params

    @property
    def device(self) -> torch.device:
        """Where the model (and so this explainer's work) is."""
        return module_device(self.model)

    @abstractmethod
    def _explain(self, images01: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Raw maps for one batch (B x h x w, any scale); every method implements this hook."""

    def skip(self, n_images: int, height: int, width: int) -> None:
        """Advance the method's random stream past `n_images` images of this size, as if it had explained them:
        a shard of a data-parallel run that starts at image n then draws what the single run draws for its
        images. Nothing to do for methods without randomness, or whose randomness is per image or fixed by the
        seed (LIME, RISE's masks)."""

    def check_inputs(self, images01: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        """Validate the image batch; return the classes to explain (the predictions when not given)."""
        if images01.ndim != 4 or images01.shape[1] != 3:
            raise ScanbenchError(f"images must be B x 3 x H x W in [0, 1] (got {tuple(images01.shape)})")
        if classes is None:
            with torch.no_grad():
                classes = self.model(images01.to(self.device)).argmax(1)
        return torch.as_tensor(classes, dtype=torch.long).view(-1).to(self.device)

    def explain(self, images01: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """Maps (B x H x W in [0, 1]) on the images' device, computed on the model's."""
        classes = self.check_inputs(images01, classes)
        out_device, x = images01.device, images01.to(self.device)   # the same device: no copy
        out = []
        for i in range(0, x.shape[0], self.batch_size):
            raw = self._explain(x[i:i + self.batch_size], classes[i:i + self.batch_size]).to(x.device)
            raw = torch.nan_to_num(raw.detach().float(), nan=0.0, posinf=0.0, neginf=0.0)
            out.append(normalize_maps(upsample_maps(raw, x.shape[-1])))
        return torch.cat(out).to(out_device)


_REGISTRY: dict[str, type[Explainer]] = {}


def register_explainer(name: str, *, families: tuple[str, ...], label: str, order: float,
                       calibration: bool = False, forward_only: bool = False
                       ) -> Callable[[type[Explainer]], type[Explainer]]:
    """Register a method under `name` with its declaration (see `Explainer`'s class attributes)."""
    if not families or any(f not in FAMILIES for f in families):
        raise ValueError(f"method {name!r}: families must be some of {FAMILIES} (got {families!r})")

    def deco(cls: type[Explainer]) -> type[Explainer]:
        for other in _REGISTRY.values():
            if other.name != name and other.order == order:
                raise ValueError(f"methods {other.name!r} and {name!r} both take table position {order}")
        cls.name, cls.families, cls.label, cls.order = name, tuple(families), label, order
        cls.calibration, cls.forward_only = calibration, forward_only
        _REGISTRY[name] = cls
        return cls
    return deco


def registered_methods() -> dict[str, type[Explainer]]:
    """Every method by name, in table order (each method module registers itself when imported)."""
    from . import _load_all  # noqa: F401

    return dict(sorted(_REGISTRY.items(), key=lambda item: (item[1].order, item[0])))


def family_methods(family: str) -> tuple[str, ...]:
    """The methods that apply to a backbone family, in table order."""
    return tuple(m for m, cls in registered_methods().items() if family in cls.families)


def check_method(name: str, family: str | None = None, where: str | None = None) -> None:
    """`name` is a registered method (applying to `family` when given); `where`: the params key that lists it,
    named in the message."""
    methods = registered_methods()
    lists = f"{where} lists " if where else ""
    if name not in methods:
        import difflib

        close = difflib.get_close_matches(str(name), list(methods), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ScanbenchError(f"{lists}unknown method {name!r}{hint}; known: {', '.join(methods)}")
    if family is not None and family not in methods[name].families:
        what = f"{where} lists method {name!r}, which does not" if where else f"method {name!r} does not"
        raise ScanbenchError(f"{what} apply to {family} backbones; those take {', '.join(family_methods(family))}")


def methods_for(family: str, methods: list[str] | tuple[str, ...]) -> list[str]:
    """The requested methods that apply to a family, in the requested order."""
    for m in methods:
        check_method(m)
    return [m for m in methods if family in registered_methods()[m].families]


def make_explainer(name: str, model: nn.Module, spec: BackboneSpec, **params: Any) -> Explainer:
    check_method(name, spec.family)
    return registered_methods()[name](model, spec, **params)


def validate_method_params(params: Mapping[str, Any]) -> None:
    """The methods the params run, against the registry, each message naming the key that lists the method: each
    family's baselines (explain.baselines.<family>) and sanity methods (sanity.methods.<family>) are registered and
    apply to that family; the timing methods (timing.methods, one list: each backbone times the ones that apply to
    it, so a CNN-only run may keep the ViT methods) and timing.n_images_per_method name registered methods; every
    explain.<method> section holds only that method's settings, with usable values (the method's `Settings`); a
    method run without a section takes its defaults, so it must have one for every key."""
    for section in ("explain", "sanity"):
        key = "baselines" if section == "explain" else "methods"
        for family, methods in ((params.get(section) or {}).get(key) or {}).items():
            for m in methods or []:
                check_method(m, family, where=f"{section}.{key}.{family}")
    timing = params.get("timing") or {}
    for m in timing.get("methods") or []:   # one list for every family: each backbone times those that apply
        check_method(m, where="timing.methods")
    for m in timing.get("n_images_per_method") or {}:
        check_method(m, where="timing.n_images_per_method")
    shared = {k for k in PARAMS_SCHEMA["explain"] if k != ANY_NAME}   # explain's own keys; the rest are methods
    sections = [k for k in (params.get("explain") or {}) if k not in shared]
    for name in dict.fromkeys([*sections, *sorted(method_names(params))]):   # a run method without one: {}
        check_method(name, where=f"explain.{name}" if name in sections else None)
        registered_methods()[name].settings_from_params(params)
