"""What is traced into ONNX: the dense image model of an objective, and LSeg's logits head when it has one.

``DenseImageModel`` maps a normalised image [N, 3, H, W] to unit embeddings [N, D, gh, gw] on the objective's
``dense_grid`` (CLIP, PACL and the last-block rows: H/patch x W/patch; LSeg: H/2 x W/2). The training-free
rows whose window logits are the cosine of text-independent dense embeddings but which have no
``dense_embeddings`` of their own (SC-CLIP) are read through their ``logits`` with the D unit vectors of the
embedding space as the "texts", at the grid's own size: those cosines are the unit embeddings themselves.

``traceable_attention`` swaps every ``nn.MultiheadAttention``'s forward, while tracing, for the same
self-attention written with shape-free reshapes: torch's own traces the token count into the graph as a
constant, so an export of it only runs at the traced size.
"""

from __future__ import annotations

import contextlib
import types
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lseg_pacl.errors import ConfigError
from lseg_pacl.models.last_block import VARIANTS

# training-free rows (model.clip.last_block) that export beyond the last-block variants, and those that don't
READ_THROUGH_LOGITS = ("scclip",)
NOT_EXPORTABLE = {
    "resclip": "its last attention is fed a first segmentation of each window against the texts (SFR), so "
               "the image model depends on the labels",
    "cliptrase": "its logits are a vote over DBSCAN clusters of each window, decided by the texts",
    "pearl": "its logits are refined over the whole image by a text-aware Laplacian propagation, which is "
             "no function of dense embeddings alone",
    "proxyclip": "its dense features live on the vision foundation model's grid, with windows padded to "
                 "multiples of 56, not on a fixed grid of the input",
}
LAST_BLOCK_ROWS = tuple(VARIANTS)
EXPORTABLE_ROWS = (*LAST_BLOCK_ROWS, *READ_THROUGH_LOGITS)


@dataclass(frozen=True)
class Spec:
    """What an export of one objective holds and how its logits follow from the embeddings."""

    objective: str  # clip | pacl | lseg
    last_block: str | None
    patch: int  # input sides must divide by this
    grid_stride: int  # the embedding grid is (H / grid_stride, W / grid_stride)
    dim: int
    native_side: int  # the side the model was built for (traced at another size, checked at both)
    align_corners: bool  # of the bilinear upsampling of the logits
    scale: float  # logits = scale x cosine (1 for CLIP and PACL)
    head: bool  # LSeg's spatial regularisation: an exported logits head


def exportable_rows() -> str:
    rows = ", ".join(EXPORTABLE_ROWS)
    return (f"what exports: CLIP, PACL and LSeg checkpoints, and the training-free rows "
            f"model.clip.last_block in {rows} (baseline_clip, baseline_maskclip, baseline_sclip, "
            f"baseline_clearclip, baseline_naclip, baseline_scclip); not {', '.join(NOT_EXPORTABLE)}")


def refusal(last_block: str) -> str:
    why = NOT_EXPORTABLE.get(last_block, "it is not a training-free row this exporter knows")
    return f"the training-free row '{last_block}' does not export to ONNX: {why}. {exportable_rows()}"


def spec_of(module) -> Spec:
    """The export spec of a built objective, or a ConfigError naming the rows that export."""
    from lseg_pacl.objectives.lseg import LSeg

    objective = module.cfg.model.objective
    if isinstance(module, LSeg):
        net = module.net
        embed = getattr(net.dpt.vit, "patch_embed", None) if net.dpt.kind != "resnet" else None
        side = int(embed.img_size[0]) if embed is not None else 8 * net.patch_size
        return Spec("lseg", None, net.patch_size, 2, int(module.clip.embed_dim), side, True,
                    float(net.log_scale.detach().exp()), net.spatial.conv is not None)
    last_block = module.clip.last_block
    if last_block not in LAST_BLOCK_ROWS and not (objective == "clip" and last_block in READ_THROUGH_LOGITS):
        raise ConfigError(refusal(last_block))
    return Spec(objective, last_block, module.patch_size, module.patch_size, int(module.clip.embed_dim),
                int(module.clip.image_size),
                False, 1.0, False)


class DenseImageModel(nn.Module):
    """image [N, 3, H, W] -> embeddings [N, D, gh, gw], unit vectors along D (float32)."""

    def __init__(self, module, spec: Spec) -> None:
        super().__init__()
        self.module = module
        self.spec = spec

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        m, spec = self.module, self.spec
        if spec.objective == "lseg":
            return m.net.pixel_embeddings(image).float()
        rows, cols = image.shape[-2] // spec.grid_stride, image.shape[-1] // spec.grid_stride
        if spec.last_block in READ_THROUGH_LOGITS:
            eye = torch.eye(spec.dim, dtype=image.dtype, device=image.device)
            return m.logits(image, eye, (rows, cols)).float()
        dense = F.normalize(m.dense_embeddings(image).float(), dim=-1)  # [N, T, D]
        return dense.transpose(1, 2).reshape(dense.shape[0], dense.shape[2], rows, cols)


class LSegLogitsHead(nn.Module):
    """LSeg's logits before upsampling: (embeddings [N, D, h, w], unit labels [C, D]) -> scale x cosine,
    spatially regularised, [N, C, h, w]."""

    def __init__(self, net) -> None:
        super().__init__()
        self.net = net

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = F.normalize(labels, dim=-1)
        logits = self.net.log_scale.exp() * torch.einsum("bdhw,nd->bnhw", embeddings, labels)
        return self.net.spatial(logits)


def _self_attention(self: nn.MultiheadAttention, query, key, value, key_padding_mask=None,
                    need_weights=True, attn_mask=None, average_attn_weights=True, is_causal=False):
    """``nn.MultiheadAttention.forward`` for self-attention (query is key is value), every shape read from
    the input so that the trace follows it."""
    if key is not query or value is not query or key_padding_mask is not None or self.in_proj_weight is None:
        raise TypeError("ONNX export traces self-attention only (query, key and value the same tensor)")
    x = query if self.batch_first else query.transpose(0, 1)  # [B, N, width]
    heads = self.num_heads
    head_dim = self.embed_dim // heads
    qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
    qkv = qkv.reshape(x.shape[0], x.shape[1], 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    logits = (q * head_dim**-0.5) @ k.transpose(-2, -1)
    if attn_mask is not None:
        logits = logits.masked_fill(attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
            else logits + attn_mask
    y = (logits.softmax(-1) @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], self.embed_dim)
    y = self.out_proj(y)
    return (y if self.batch_first else y.transpose(0, 1)), None


def _quantile(x: torch.Tensor, q: float, dim: int = -1, keepdim: bool = False, *,
              interpolation: str = "linear", out=None) -> torch.Tensor:
    """``torch.quantile`` (a float ``q``, one ``dim``, linear interpolation) from sort and gather, which ONNX
    has (aten::quantile has no ONNX form)."""
    if not isinstance(q, float) or interpolation != "linear" or out is not None:
        raise TypeError("ONNX export traces torch.quantile with one float q and linear interpolation only")
    ordered = x.sort(dim=dim).values
    position = (torch.tensor(x.shape[dim], dtype=torch.float32) - 1) * q
    low = position.floor()
    high = position.ceil()
    frac = (position - low).to(x.dtype)
    below = ordered.index_select(dim, low.long().reshape(1))
    above = ordered.index_select(dim, high.long().reshape(1))
    result = below + (above - below) * frac
    return result if keepdim else result.squeeze(dim)


def _eye(eye):
    """``torch.eye`` whose bool form is built as float then compared (ONNX Runtime has no bool EyeLike)."""

    def build(*args, dtype=None, **kwargs):
        if dtype is torch.bool:
            return eye(*args, dtype=torch.float32, **kwargs) > 0.5
        return eye(*args, dtype=dtype, **kwargs)

    return build


@contextlib.contextmanager
def traceable_attention(model: nn.Module):
    """Every ``nn.MultiheadAttention`` in ``model`` runs ``_self_attention`` inside the block, and
    ``torch.quantile`` and ``torch.eye`` are ONNX-friendly equivalents, while tracing."""
    patched = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    for m in patched:
        m.forward = types.MethodType(_self_attention, m)
    quantile, eye = torch.quantile, torch.eye
    torch.quantile, torch.eye = _quantile, _eye(eye)
    try:
        yield
    finally:
        torch.quantile, torch.eye = quantile, eye
        for m in patched:
            del m.forward
