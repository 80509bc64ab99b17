import math

import pytest
import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock, Transformer

from lseg_pacl.models.clip import ClipBackbone
from lseg_pacl.models.last_block import (
    VARIANTS,
    attention_weights,
    last_block,
    neighbourhood_prior,
    transformer_tokens,
)

CHANGED = tuple(v for v in VARIANTS if v != "plain")
WIDTH, HEADS = 32, 4
GRID = (3, 4)  # not square: catches a row/column mix-up in the NACLIP prior


def randomise(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random values for every parameter (biases and layer scales included), so nothing is zero or one."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (0.5 if p.ndim == 1 else 0.0))
    return module.eval()


def random_block(seed: int = 0) -> ResidualAttentionBlock:
    block = ResidualAttentionBlock(WIDTH, HEADS, ls_init_value=0.5, batch_first=True)
    return randomise(block, seed).double()


def tokens(grid=GRID, batch: int = 2, width: int = WIDTH, seed: int = 1, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1 + grid[0] * grid[1], width, generator=g).to(dtype)


# ------------------------------------------------------------------ hand computations (independent of the
# module)


def hand_qkv(block, x):
    """q, k, v per head [B, H, N, hd] from ln_1(x), written out with explicit weight slices."""
    d = x.shape[-1]
    h = F.layer_norm(x, (d,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
    w, b = block.attn.in_proj_weight, block.attn.in_proj_bias
    out = []
    for i in range(3):
        y = h @ w[i * d : (i + 1) * d].T + b[i * d : (i + 1) * d]
        out.append(y.reshape(x.shape[0], x.shape[1], HEADS, d // HEADS).transpose(1, 2))
    return out


def hand_out_proj(block, y):
    """Merge heads [B, H, N, hd] -> [B, N, D] and apply out_proj."""
    bsz, h, n, hd = y.shape
    y = y.transpose(1, 2).reshape(bsz, n, h * hd)
    return y @ block.attn.out_proj.weight.T + block.attn.out_proj.bias


def hand_ffn_residual(block, x, attn_out):
    """x + ls_1 * attn_out, then + ls_2 * mlp(ln_2(.)): the block's residual structure."""
    x = x + block.ls_1.gamma * attn_out
    d = x.shape[-1]
    h = F.layer_norm(x, (d,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
    h = F.gelu(h @ block.mlp.c_fc.weight.T + block.mlp.c_fc.bias)
    return x + block.ls_2.gamma * (h @ block.mlp.c_proj.weight.T + block.mlp.c_proj.bias)


def hand_prior(grid, sigma):
    n = 1 + grid[0] * grid[1]
    prior = torch.zeros(n, n, dtype=torch.float64)
    for i in range(grid[0] * grid[1]):
        for j in range(grid[0] * grid[1]):
            ri, ci = divmod(i, grid[1])
            rj, cj = divmod(j, grid[1])
            prior[1 + i, 1 + j] = math.exp(-((ri - rj) ** 2 + (ci - cj) ** 2) / (2 * sigma**2))
    return prior


def hand_attention(block, x, variant, grid=GRID, sigma=5.0):
    q, k, _ = hand_qkv(block, x)
    s = (WIDTH // HEADS) ** -0.5
    if variant == "sclip":
        return torch.softmax(q @ q.transpose(-1, -2) * s, -1) + torch.softmax(k @ k.transpose(-1, -2) * s, -1)
    if variant == "clearclip":
        return torch.softmax(q @ q.transpose(-1, -2) * s, -1)
    assert variant == "naclip"
    return torch.softmax(k @ k.transpose(-1, -2) * s + hand_prior(grid, sigma), -1)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def tiny_visual():
    torch.manual_seed(0)
    return ClipBackbone("lseg-tiny-vit").model.visual.eval()


def transformer_pair():
    """Two open_clip Transformers with the same weights, batch_first True and False."""
    first = randomise(Transformer(WIDTH, 3, HEADS, ls_init_value=0.5, batch_first=True), seed=3)
    second = Transformer(WIDTH, 3, HEADS, ls_init_value=0.5, batch_first=False).eval()
    second.load_state_dict(first.state_dict())
    return first, second


# ------------------------------------------------------------------ tests


def test_plain_equals_the_transformer_exactly_on_the_tiny_clip(tiny_visual):
    grid = tiny_visual.grid_size
    x = tokens(grid, width=tiny_visual.transformer.width, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(
            transformer_tokens(tiny_visual.transformer, x, "plain", grid),
            tiny_visual.transformer(x),
            rtol=0,
            atol=0,
        )


@pytest.mark.parametrize("batch_first", [True, False])
def test_plain_equals_the_transformer_exactly_both_layouts(batch_first):
    transformer = transformer_pair()[0 if batch_first else 1]
    assert transformer.batch_first is batch_first
    x = tokens(dtype=torch.float32)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            torch.testing.assert_close(
                transformer_tokens(transformer, x, "plain", GRID), transformer(x), rtol=0, atol=0
            )


@pytest.mark.parametrize("batch_first", [True, False])
def test_plain_last_block_equals_the_block(batch_first):
    transformer = transformer_pair()[0 if batch_first else 1]
    block = transformer.resblocks[-1]
    x = tokens(dtype=torch.float32)
    own = block(x) if batch_first else block(x.transpose(0, 1)).transpose(0, 1)
    torch.testing.assert_close(last_block(block, x, "plain", GRID), own, rtol=0, atol=0)


@pytest.mark.parametrize("variant", CHANGED)
@pytest.mark.parametrize("which", ["tiny", "batch_first", "seq_first"])
def test_variant_changes_only_the_last_block(variant, which, tiny_visual):
    if which == "tiny":
        transformer, grid = tiny_visual.transformer, tiny_visual.grid_size
    else:
        transformer, grid = transformer_pair()[0 if which == "batch_first" else 1], GRID
    x = tokens(grid, width=transformer.width, dtype=torch.float32)
    seen = []

    def grab(module, args):
        inp = args[0]  # plain runs the block in the transformer's layout, the variants batch-first
        seen.append((inp if inp.shape[:2] == x.shape[:2] else inp.transpose(0, 1)).clone())

    handle = transformer.resblocks[-1].ln_1.register_forward_pre_hook(grab)
    try:
        with torch.no_grad():
            plain = transformer_tokens(transformer, x, "plain", grid)
            changed = transformer_tokens(transformer, x, variant, grid)
    finally:
        handle.remove()
    assert len(seen) == 2
    assert seen[0].shape == x.shape
    torch.testing.assert_close(seen[1], seen[0], rtol=0, atol=0)
    assert changed.shape == plain.shape == x.shape
    assert not torch.allclose(changed, plain, atol=1e-3)
    # and the variant's last block applied to those tokens is what comes out
    torch.testing.assert_close(
        changed, last_block(transformer.resblocks[-1], seen[0], variant, grid), rtol=0, atol=0
    )


def test_maskclip_equals_the_value_path_by_hand():
    block, x = random_block(), tokens()
    _, _, v = hand_qkv(block, x)
    expected = hand_ffn_residual(block, x, hand_out_proj(block, v))
    torch.testing.assert_close(last_block(block, x, "maskclip", GRID), expected, rtol=1e-10, atol=1e-10)


def test_maskclip_equals_the_block_with_self_only_attention_mask():
    """Cross-check against open_clip's own forward: a mask that lets each token see only itself."""
    block, x = random_block(5), tokens(seed=6)
    n = x.shape[1]
    mask = torch.full((n, n), float("-inf"), dtype=x.dtype).fill_diagonal_(0.0)
    torch.testing.assert_close(
        last_block(block, x, "maskclip", GRID), block(x, attn_mask=mask), rtol=1e-9, atol=1e-9
    )


def test_sclip_equals_the_hand_computation_with_residual_and_ffn():
    block, x = random_block(7), tokens(seed=8)
    _, _, v = hand_qkv(block, x)
    expected = hand_ffn_residual(block, x, hand_out_proj(block, hand_attention(block, x, "sclip") @ v))
    torch.testing.assert_close(last_block(block, x, "sclip", GRID), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variant", ["clearclip", "naclip"])
@pytest.mark.parametrize("sigma", [5.0, 1.0])
def test_no_residual_variants_are_out_proj_of_attention_times_v(variant, sigma):
    block, x = random_block(9), tokens(seed=10)
    _, _, v = hand_qkv(block, x)
    expected = hand_out_proj(block, hand_attention(block, x, variant, GRID, sigma) @ v)
    got = last_block(block, x, variant, GRID, naclip_sigma=sigma)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    # no residual: adding x back would be a different answer
    assert not torch.allclose(got, expected + x, atol=1e-3)


def test_naclip_sigma_is_used():
    block, x = random_block(11), tokens(seed=12)
    assert not torch.allclose(
        last_block(block, x, "naclip", GRID, naclip_sigma=5.0),
        last_block(block, x, "naclip", GRID, naclip_sigma=0.7),
        atol=1e-6,
    )


@pytest.mark.parametrize("variant,total", [("sclip", 2.0), ("clearclip", 1.0), ("naclip", 1.0)])
def test_attention_rows_sum(variant, total):
    block, x = random_block(13), tokens(seed=14)
    attn = attention_weights(block, x, variant, GRID)
    n = x.shape[1]
    assert attn.shape == (x.shape[0], HEADS, n, n)
    assert (attn >= 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.full(attn.shape[:-1], total, dtype=attn.dtype))
    torch.testing.assert_close(attn.double(), hand_attention(block, x, variant), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("variant,total", [("sclip", 2.0), ("clearclip", 1.0), ("naclip", 1.0)])
def test_row_sums_through_the_public_output(variant, total):
    """With v constant over tokens (value weights zero), attn @ v = row sum * v bias for every token."""
    block, x = random_block(15), tokens(seed=16)
    with torch.no_grad():
        block.attn.in_proj_weight[2 * WIDTH :] = 0.0
    v_bias = block.attn.in_proj_bias[2 * WIDTH :]
    attn_out = (total * v_bias) @ block.attn.out_proj.weight.T + block.attn.out_proj.bias
    got = last_block(block, x, variant, GRID)
    if variant == "sclip":
        expected = hand_ffn_residual(block, x, attn_out.expand_as(x))
    else:
        expected = attn_out.expand_as(x)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_neighbourhood_prior_peaks_on_the_diagonal_and_decays_with_distance():
    grid, sigma = (5, 7), 5.0
    prior = neighbourhood_prior(grid, sigma)
    n = 1 + grid[0] * grid[1]
    assert prior.shape == (n, n)
    torch.testing.assert_close(prior.double(), hand_prior(grid, sigma), rtol=1e-6, atol=1e-7)
    assert (prior[0] == 0).all() and (prior[:, 0] == 0).all()  # CLS has no position
    patches = prior[1:, 1:]
    torch.testing.assert_close(patches.diagonal(), torch.ones(n - 1))
    assert (patches.diagonal()[:, None] >= patches).all()
    assert (patches.argmax(dim=1) == torch.arange(n - 1)).all()  # diagonal is the unique maximum per row
    torch.testing.assert_close(patches, patches.T)
    centre = 2 * grid[1] + 3  # patch at row 2, column 3
    along_row = patches[centre, 2 * grid[1] + 3 : 3 * grid[1]]  # columns 3..6 of the same row
    along_col = patches[centre, [2 * grid[1] + 3, 3 * grid[1] + 3, 4 * grid[1] + 3]]  # rows 2..4, column 3
    assert (along_row.diff() < 0).all() and (along_col.diff() < 0).all()
    torch.testing.assert_close(patches[centre, 2 * grid[1] + 4], torch.tensor(math.exp(-1 / 50)))
    # the prior follows Euclidean grid distance: the diagonal neighbour is below both axis neighbours
    assert patches[centre, 3 * grid[1] + 4] < patches[centre, 2 * grid[1] + 4]


@pytest.mark.parametrize("fn", ["last_block", "transformer_tokens"])
def test_unknown_variant_is_a_value_error_naming_the_known_ones(fn):
    transformer = transformer_pair()[0]
    x = tokens(dtype=torch.float32)
    with pytest.raises(ValueError, match="maskclip.*sclip.*clearclip.*naclip"):
        if fn == "last_block":
            last_block(transformer.resblocks[-1], x, "segclip", GRID)
        else:
            transformer_tokens(transformer, x, "segclip", GRID)


def test_grid_that_does_not_fit_the_tokens_is_a_value_error():
    block, x = random_block(), tokens()
    with pytest.raises(ValueError, match="grid"):
        last_block(block, x, "naclip", (4, 4))


@pytest.mark.parametrize("variant", VARIANTS)
def test_batch_first_true_and_false_give_the_same_tokens(variant):
    first, second = transformer_pair()
    x = tokens(dtype=torch.float32)
    with torch.no_grad():
        a = transformer_tokens(first, x, variant, GRID)
        b = transformer_tokens(second, x, variant, GRID)
    assert a.shape == b.shape == x.shape
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_autocast_on_cpu(variant, tiny_visual):
    transformer, grid = tiny_visual.transformer, tiny_visual.grid_size
    x = tokens(grid, width=transformer.width, dtype=torch.float32)
    with torch.no_grad():
        full = transformer_tokens(transformer, x, variant, grid)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = transformer_tokens(transformer, x, variant, grid)
    assert half.shape == full.shape
    assert torch.isfinite(half).all()
    rel = (half.float() - full).norm() / full.norm()
    assert rel < 0.05, rel
