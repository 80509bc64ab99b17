"""Contrastive batches across DDP ranks, so that N ranks x B/N give the loss and gradients of one process x B.

Every rank gathers the batch's captions and nouns (strings) and builds the same global text list; each rank
encodes one contiguous chunk of it, and the chunks are gathered with their gradients. Each rank scores its own
images against all texts (a [b, T] block of logits), and the blocks are gathered with their gradients into the
global [B, T] logits, on which every rank computes the same loss. ``torch.distributed.nn``'s all_gather sums
the gradients that reach each rank's slice from every rank's copy of the loss; DDP's average over ranks then
gives exactly the single-process gradient. With one process every function here is the identity.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

from data_modules.ranks import distributed, place


def world() -> tuple[int, int]:
    """(rank, world size) of the live process group; (this rank, 1) when there is no collective to run."""
    rank, size = place()
    return (rank, size) if distributed() else (rank, 1)


def gather_objects(obj: object) -> list:
    """Every rank's ``obj``, in rank order."""
    _, n = world()
    if n == 1:
        return [obj]
    out: list = [None] * n
    dist.all_gather_object(out, obj)
    return out


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``x`` along dim 0 (sizes may differ), keeping the gradient to the local
    part."""
    rank, n = world()
    if n == 1:
        return x
    sizes = [int(s) for s in gather_objects(int(x.shape[0]))]
    pad = max(sizes) - x.shape[0]
    padded = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))]) if pad else x
    from torch.distributed.nn.functional import all_gather

    parts = all_gather(padded.contiguous())
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])


def global_batch(batch: dict) -> dict:
    """The captions and nouns of every rank's batch, concatenated in rank order (images stay local)."""
    _, n = world()
    if n == 1:
        return batch
    parts = gather_objects({"caption": list(batch["caption"]), "nouns": list(batch["nouns"])})
    return {
        "caption": [c for p in parts for c in p["caption"]],
        "nouns": [x for p in parts for x in p["nouns"]],
    }


def encode_chunk(texts: list[str], encode: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
    """Embeddings of all ``texts``: this rank encodes its contiguous share, the shares are gathered."""
    rank, n = world()
    if n == 1:
        return encode(texts)
    per = -(-len(texts) // n)
    mine = texts[rank * per : (rank + 1) * per]
    local = encode(mine) if mine else None
    if local is None:  # fewer texts than ranks: keep the shape and the graph with an empty block
        local = encode(texts[:1])[:0]
    return gather_with_grad(local)
