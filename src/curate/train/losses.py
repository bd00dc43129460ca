"""Contrastive losses: symmetric InfoNCE over (optionally all-gathered) features, and the
GLoRIA-style local token-patch loss."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def distributed_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def gather_features(features: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's features. The local slot keeps its autograd graph, so each rank
    back-propagates through its own samples while seeing all negatives (open_clip's
    `gather_with_grad=False` path). Identity when no process group is initialised."""
    if not distributed_active():
        return features
    world, rank = dist.get_world_size(), dist.get_rank()
    gathered = [torch.zeros_like(features) for _ in range(world)]
    dist.all_gather(gathered, features.detach().contiguous())
    gathered[rank] = features
    return torch.cat(gathered, dim=0)


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
