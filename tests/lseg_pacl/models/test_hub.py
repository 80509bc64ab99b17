import socket

import pytest

from lseg_pacl.errors import MissingInputError
from lseg_pacl.models import hub

COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


class _Connection:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _fake_hf_cache(root, repo_id: str, filename: str) -> str:
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    file = repo / "snapshots" / COMMIT / filename
    file.write_bytes(b"weights")
    return str(file)


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@pytest.mark.parametrize(("value", "offline"), [("1", True), ("ON", True), ("true", True), ("0", False),
                                                 ("", False), ("False", False), ("off", False)])
def test_hf_hub_offline_values(monkeypatch, value, offline):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub.hub_offline() is offline


def test_offline_mode_never_touches_the_network(monkeypatch, offline):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.host_reachable("https://huggingface.co") is False  # a connection would fail the test


def test_reachability_probes_port_443_of_the_host(monkeypatch, online):
    calls = []

    def connect(address, timeout):
        calls.append((address, timeout))
        return _Connection()

    monkeypatch.setattr(socket, "create_connection", connect)
    assert hub.host_reachable("https://example.org/some/file.bin", timeout=1.5)
    assert calls == [(("example.org", 443), 1.5)]
    assert hub.host_reachable("not a url") is False and len(calls) == 1


def test_unreachable_host(monkeypatch, online):
    def fail(address, timeout):
        raise OSError("no route")

    monkeypatch.setattr(socket, "create_connection", fail)
    assert hub.host_reachable("https://huggingface.co") is False


def test_cache_dir_follows_the_environment_at_call_time(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub.hf_cache_dir() == str(tmp_path / "home" / "hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hub.hf_cache_dir() == str(tmp_path / "cache")


def test_cached_hf_file_finds_the_first_available_name(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    file = _fake_hf_cache(tmp_path / "hub", "timm/some_vit", "pytorch_model.bin")
    assert hub.cached_hf_file("timm/some_vit", ["model.safetensors", "pytorch_model.bin"]) == file
    assert hub.cached_hf_file(f"timm/some_vit@{COMMIT}", ["pytorch_model.bin"]) == file
    assert hub.cached_hf_file("timm/some_vit", ["model.safetensors"]) is None
    assert hub.cached_hf_file("timm/other_vit", ["pytorch_model.bin"]) is None


def test_cached_open_clip_weights_from_the_hub_cache_or_the_clip_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    file = _fake_hf_cache(tmp_path / "hf" / "hub", "timm/vit_clip", "open_clip_model.safetensors")
    assert hub.cached_hub_file({"hf_hub": "timm/vit_clip/"}) == file
    assert hub.cached_hub_file({"hf_hub": "timm/vit_clip/other.bin"}) is None
    url = "https://openaipublic.azureedge.net/clip/models/abc/ViT-B-16.pt"
    assert hub.cached_hub_file({"url": url}) is None
    local = tmp_path / "home" / ".cache" / "clip" / "ViT-B-16.pt"
    local.parent.mkdir(parents=True)
    local.write_bytes(b"x")
    assert hub.cached_hub_file({"url": url}) == str(local)


def test_require_reachable_fails_fast_with_instructions(monkeypatch, offline):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingInputError) as info:  # no connection tried, no wait (the offline fixture)
        hub.require_reachable("https://huggingface.co", what="Weights X", filename="model.safetensors",
                              where="https://huggingface.co/org/x", config_key="model.x.pretrained")
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message and "https://huggingface.co/org/x" in message
    assert "model.x.pretrained=/path/to/model.safetensors" in message


def test_require_reachable_asks_the_probe_host_and_passes_when_it_answers(monkeypatch):
    asked = []
    answers = lambda url, timeout=3.0: asked.append(url) or url.endswith(".co")  # noqa: E731 - a stand-in probe
    monkeypatch.setattr(hub, "host_reachable", answers)
    assert (
        hub.require_reachable("https://huggingface.co", what="w", filename="f", where="w", config_key="k")
        is None
    )
    assert asked == ["https://huggingface.co"]
    with pytest.raises(MissingInputError, match="k=/path/to/f"):  # the same call, the host silent
        hub.require_reachable("https://example.org", what="w", filename="f", where="w", config_key="k")


def test_clip_download_without_network_names_the_file(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingInputError, match="model.clip.pretrained=/path/to/open_clip_pytorch_model.bin"):
        hub.download_clip_weights("ViT-B-16", "laion", {"hf_hub": "laion/some-clip/"})
    with pytest.raises(MissingInputError, match="/path/to/ViT-B-16.pt"):
        hub.download_clip_weights("ViT-B-16", "openai", {"url": "https://openaipublic.example/x/ViT-B-16.pt"})
