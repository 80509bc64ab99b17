"""Suite ``pacl_loss``: forward + backward of PACL's compatibility inside the InfoNCE loss, the efficient form
(models/pacl.py: no [Bi, Bt, D] tensor, text chunks recomputed in backward) against the direct form that
materialises the attended vector for every pair, at Bi = Bt in {256, 1024} (full: also 4096), T = 196, D = 512
(ViT-B/16 at 224). Each case runs in its own process, so each peak is measured from the same clean baseline.
"""

from __future__ import annotations

import os
import time

import torch

from lseg_pacl.bench.measure import in_fresh_process, peak_bytes, seconds
from lseg_pacl.models.pacl import pacl_compatibility, pacl_compatibility_direct
from lseg_pacl.objectives.losses import contrastive_loss

TOKENS, DIM = 196, 512
FORMS = {"efficient": pacl_compatibility, "direct": pacl_compatibility_direct}


def direct_peak_estimate(n: int) -> int:
    """Bytes the direct form's float32 [n, n, D] and [n, n, T] activations need (v, v-hat and their gradients;
    sims and attention): a lower bound, to say why a size is not run."""
    return 4 * n * n * (4 * DIM + 4 * TOKENS)


def one_case(form: str, n: int, device: str, repeats: int) -> dict:
    """Peak memory of one forward + backward, and its time (the median of ``repeats`` more calls, or of that
one call when ``repeats`` is 0); a spawned child runs this."""
    torch.set_num_threads(os.cpu_count() or 1)
    g = torch.Generator().manual_seed(0)
    patches = torch.randn(n, TOKENS, DIM, generator=g).to(device).requires_grad_()
    texts = torch.randn(n, DIM, generator=g).to(device)  # frozen text embeddings: no gradient
    compatibility = FORMS[form]

    def step() -> None:
        patches.grad = None
        loss = contrastive_loss(14.3 * compatibility(patches, texts, 0.1))
        loss.backward()

    start = time.perf_counter()
    peak = peak_bytes(step, device)  # the first call: its time counts when it is the only one
    first = time.perf_counter() - start
    return {"peak_bytes": peak, "seconds": seconds(step, repeats=repeats, warmup=0) if repeats else first}


def pacl_loss_suite(full: bool, device: str = "cpu", sizes: tuple[int, ...] | None = None) -> dict[str, dict]:
    sizes = sizes or ((256, 1024, 4096) if full else (256, 1024))
    figures: dict[str, dict] = {}
    budget = 20 * 2**30  # never attempt a case whose known lower bound exceeds this
    for n in sizes:
        runs: dict[str, dict] = {}
        for form in FORMS:
            if form == "direct" and direct_peak_estimate(n) > budget:
                figures[f"pacl_loss.direct_not_run_{n}"] = {
                    "value": direct_peak_estimate(n) / 2**30, "unit": "GiB needed at least"}
                continue
            runs[form] = in_fresh_process(one_case, form, n, device, 3 if n <= 256 else 0)
            figures[f"pacl_loss.{form}_peak_mib_{n}"] = {
                "value": runs[form]["peak_bytes"] / 2**20,
                "unit": "MiB",
            }
            figures[f"pacl_loss.{form}_seconds_{n}"] = {
                "value": runs[form]["seconds"],
                "unit": "s per forward+backward",
            }
        if len(runs) == 2:
            figures[f"pacl_loss.memory_ratio_{n}"] = {
                "value": runs["efficient"]["peak_bytes"] / max(1, runs["direct"]["peak_bytes"]),
                "unit": "efficient / direct peak memory",
            }
            figures[f"pacl_loss.time_ratio_{n}"] = {
                "value": runs["efficient"]["seconds"] / runs["direct"]["seconds"],
                "unit": "efficient / direct time",
            }
    return figures
