import pytest
import torch

from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.models.clip import ClipBackbone, create_clip


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return ClipBackbone("lseg-tiny-vit").eval()


def test_tiny_clip_dense_and_pooled_shapes(tiny):
    images = torch.randn(2, 3, 64, 64)
    dense = tiny.dense_features(images)
    assert dense.shape == (2, 64, tiny.embed_dim)
    assert tiny.encode_image(images).shape == (2, tiny.embed_dim)
    # dense = ln_post(patch tokens) @ proj, pooled = ln_post(CLS) @ proj
    torch.testing.assert_close(tiny.project(tiny.patch_tokens(images)), dense)


def test_pooled_embedding_matches_open_clip(tiny):
    images = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(
        tiny.encode_image(images), tiny.model.encode_image(images), rtol=1e-5, atol=1e-5
    )


def test_positional_embeddings_are_resized_for_other_inputs(tiny):
    dense = tiny.dense_features(torch.randn(1, 3, 96, 64))
    assert dense.shape == (1, 12 * 8, tiny.embed_dim)
    with pytest.raises(ValueError, match="patch size"):
        tiny.dense_features(torch.randn(1, 3, 60, 64))


def test_text_truncated_to_the_batch_leaves_embeddings_unchanged(tiny):
    texts = ["a ball", "a red ball and a wooden box on the grass under a blue sky", "sky"]
    short = tiny.tokenize(texts)
    assert short.shape[1] < tiny.model.positional_embedding.shape[0]
    full = tiny.model.encode_text(tiny.tokenizer(texts))
    torch.testing.assert_close(tiny.encode_text(texts), full, rtol=1e-5, atol=1e-5)


def test_class_embeddings_are_template_averages_and_cached(tiny):
    names, templates = ("ball", "sky"), ("a {}.", "a photo of the {}.")
    emb = tiny.class_embeddings(names, templates)
    assert emb.shape == (2, tiny.embed_dim)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    per = torch.nn.functional.normalize(tiny.encode_text(["a ball.", "a photo of the ball."]), dim=-1)
    torch.testing.assert_close(
        emb[0], torch.nn.functional.normalize(per.mean(0), dim=0), rtol=1e-5, atol=1e-5
    )
    assert tiny.class_embeddings(names, templates) is emb  # second call served from the cache
    tiny.text_cache.clear()
    assert tiny.class_embeddings(names, templates) is not emb


def test_local_weights_file_round_trips(tmp_path, tiny):
    path = tmp_path / "weights.pt"
    torch.save(tiny.model.state_dict(), path)
    other = create_clip("lseg-tiny-vit", str(path))
    for (name, a), (_, b) in zip(tiny.model.state_dict().items(), other.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(MissingInputError, match="does not exist"):
        create_clip("lseg-tiny-vit", str(tmp_path / "nope.pt"))


def test_unknown_tag_lists_the_known_ones():
    with pytest.raises(ConfigError, match="openai"):
        create_clip("ViT-B-16", "no_such_tag")


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="unknown open_clip model"):
        create_clip("ViT-Q-99")


def test_download_without_network_fails_fast_and_says_which_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("lseg_pacl.models.hub.cached_hub_file", lambda cfg: None)
    with pytest.raises(MissingInputError) as info:
        create_clip("ViT-B-16-quickgelu", "openai")
    message = str(info.value)
    assert "model.clip.pretrained=" in message and "open_clip_pytorch_model.bin" in message
