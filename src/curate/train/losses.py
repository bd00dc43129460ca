"""Contrastive losses: symmetric InfoNCE over (optionally all-gathered) features, and the
GLoRIA-style local token-patch loss."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def distributed_active() -> bool:
    return dist.is_available() and dist.is_initialized()


class ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by `factor` (the value stays bit-exact)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, factor: float) -> torch.Tensor:  # type: ignore[override]
        ctx.factor = factor
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad * ctx.factor, None


def scale_grad(tensor: torch.Tensor, factor: float) -> torch.Tensor:
    return tensor if factor == 1 else ScaleGrad.apply(tensor, factor)


def gather_features(features: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's features (ranks may hold different numbers of rows: a batch
    loses its unusable rows). The local slot keeps its autograd graph, so each rank
    back-propagates through its own samples while seeing all negatives (open_clip's
    `gather_with_grad=False` path). Its gradient is multiplied by the world size: every rank's
    loss is the whole global-batch loss, DDP averages the ranks' gradients, and the sum of the
    ranks' local gradients is the full-batch gradient; the temperature, which every rank
    differentiates fully, is left as is. Identity when no process group is initialised."""
    if not distributed_active() or dist.get_world_size() == 1:
        return features
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([features.shape[0]], device=features.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(int(s) for s in sizes))
    padded = features.detach().new_zeros((longest, *features.shape[1:]))
    padded[: features.shape[0]] = features.detach()
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded.contiguous())
    parts = [g[: int(n)] for g, n in zip(gathered, sizes)]
    parts[rank] = scale_grad(features, float(world))
    return torch.cat(parts, dim=0)


def clip_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE; row i of each side is the positive of column i of the other.
    `logit_scale` is the log of the inverse temperature."""
    image_all = gather_features(image_features)
    text_all = gather_features(text_features)
    scale = logit_scale.exp()
    logits_per_image = scale * image_all @ text_all.t()
    labels = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)
    return (
        F.cross_entropy(logits_per_image.float(), labels)
        + F.cross_entropy(logits_per_image.t().float(), labels)
    ) / 2


def local_similarity(
    words: torch.Tensor,
    word_mask: torch.Tensor,
    patches: torch.Tensor,
    temperature_attention: float,
    temperature_aggregate: float,
) -> torch.Tensor:
    """GLoRIA word-region matching. For every (image j, text i) pair each word attends over the
    image's patches; the cosine between a word and its attended context aggregates over the
    words with log-sum-exp. Returns (images, texts) similarities."""
    words = F.normalize(words.float(), dim=-1)
    patches = F.normalize(patches.float(), dim=-1)
    # (texts i, images j, words t, patches p)
    scores = torch.einsum("itd,jpd->ijtp", words, patches)
    attention = torch.softmax(temperature_attention * scores, dim=-1)
    context = F.normalize(torch.einsum("ijtp,jpd->ijtd", attention, patches), dim=-1)
    word_sim = (context * words[:, None]).sum(-1)  # (i, j, t)
    word_sim = word_sim.masked_fill(~word_mask[:, None, :], float("-inf"))
    aggregated = torch.logsumexp(temperature_aggregate * word_sim, dim=-1) / temperature_aggregate
    return aggregated.t()


def local_loss(
    words: torch.Tensor,
    word_mask: torch.Tensor,
    patches: torch.Tensor,
    temperature_attention: float,
    temperature_aggregate: float,
    temperature_logits: float,
) -> torch.Tensor:
    similarity = local_similarity(
        words, word_mask, patches, temperature_attention, temperature_aggregate
    )
    logits = temperature_logits * similarity
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
