"""Shared pieces of the miners: multi-label relevance and the empty index tuple."""

from __future__ import annotations

import torch

IndicesTuple = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def relevance(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) B x B boolean masks: positive = shares >= 1 label (self excluded), negative = none.

    Single-label class ids (a 1-D tensor) are treated as one-hot vectors, so the same rule is "same class".
    """
    if labels.ndim == 1:
        labels = torch.nn.functional.one_hot(labels.long())
    lab = labels.float()
    overlap = lab @ lab.T
    eye = torch.eye(len(lab), dtype=torch.bool, device=lab.device)
    return (overlap > 0) & ~eye, overlap == 0


def empty_tuple(device: torch.device | str = "cpu") -> IndicesTuple:
    """An index tuple with no triplets."""
    e = torch.zeros(0, dtype=torch.long, device=device)
    return e, e.clone(), e.clone()
