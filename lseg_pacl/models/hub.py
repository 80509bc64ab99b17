"""Weights from a model hub, offline-first: the local cache, then the network, else a fast, actionable error.

CLIP and the DPT's ImageNet ViT (weights.py) both fetch weights through the Hugging Face hub or a plain
URL. Left alone, open_clip and timm retry an unreachable host for about a minute and then fail with a
network traceback. Here the cache is read first, the host is probed once (a few seconds at most, and not at
all when ``HF_HUB_OFFLINE`` is set), and without a network the error names the file, where to get it, and the
config key that takes a local copy instead.

Cache locations follow the environment at call time (``HF_HUB_CACHE``, ``HF_HOME``), not at import time as
``huggingface_hub.constants`` does, so a process (or a test) that changes them later is honoured.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from lseg_pacl.config.values import parse_bool
from lseg_pacl.errors import MissingInputError


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` asks for no network (a yes/no word; unset or empty: no)."""
    value = os.environ.get("HF_HUB_OFFLINE", "").strip()
    return bool(value) and parse_bool(value, "HF_HUB_OFFLINE")


def host_reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether ``url``'s host accepts a TCP connection on port 443 within ``timeout`` seconds."""
    if hub_offline():
        return False
    host = urlparse(url).hostname
    if not host:
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def hf_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def hf_cache_dir() -> str:
    """The Hugging Face hub cache as the environment names it now."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return os.path.expanduser(os.environ[var])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def split_repo(repo: str) -> tuple[str, str | None]:
    """``org/name@revision`` (timm's notation) -> (``org/name``, revision or None)."""
    repo_id, _, revision = repo.partition("@")
    return repo_id, revision or None


def cached_hf_file(repo: str, filenames: Sequence[str]) -> str | None:
    """The first of ``filenames`` that the local hub cache holds for ``repo``, or None."""
    from huggingface_hub import try_to_load_from_cache

    repo_id, revision = split_repo(repo)
    for name in filenames:
        found = try_to_load_from_cache(repo_id, name, cache_dir=hf_cache_dir(), revision=revision)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def require_reachable(probe: str, *, what: str, filename: str, where: str, config_key: str) -> None:
    """Raise MissingInputError at once unless ``probe``'s host can be reached."""
    if host_reachable(probe):
        return
    host = urlparse(probe).hostname or probe
    reason = "HF_HUB_OFFLINE is set" if hub_offline() else f"{host} cannot be reached"
    raise MissingInputError(
        f"{what} are not in the local cache and {reason}. "
        f"On a machine with network, download {filename} from {where} and pass "
        f"{config_key}=/path/to/{filename} (or copy your Hugging Face cache to this machine)."
    )


# ------------------------------------------------------------------------------------------------ open_clip


def cached_hub_file(cfg: dict) -> str | None:
    """The already-downloaded weights file of an open_clip pretrained tag, if the local cache has it."""
    hub = cfg.get("hf_hub", "")
    if hub:
        import open_clip

        model_id, filename = os.path.split(hub)
        names = [filename] if filename else [open_clip.constants.HF_SAFE_WEIGHTS_NAME,
                                             open_clip.constants.HF_WEIGHTS_NAME]
        found = cached_hf_file(model_id, names)
        if found:
            return found
    url = cfg.get("url", "")
    if url:
        local = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        if local.is_file():
            return str(local)
    return None


def download_clip_weights(name: str, tag: str, cfg: dict) -> str:
    """Download an open_clip tag's weights file (through open_clip), failing fast without a network."""
    import open_clip

    hub = cfg.get("hf_hub", "")
    where = f"{hf_endpoint()}/{os.path.split(hub)[0]}" if hub else cfg.get("url", "")
    probe = hf_endpoint() if hub else cfg.get("url", "")
    if hub:
        filename = os.path.split(hub)[1] or open_clip.constants.HF_WEIGHTS_NAME
    else:
        filename = os.path.basename(where)
    require_reachable(probe, what=f"CLIP weights {name}/{tag}", filename=filename, where=where,
                      config_key="model.clip.pretrained")
    return open_clip.download_pretrained(cfg)
