"""The MiLAN objective (Roy, Sangineto, Demir, Sebe; GRSL 2021; constants from the MHCLN code).

L = L_T - (beta/K) * L_P + gamma * L_B, with h the sigmoid outputs of every item in the batch:
- L_T: triplet loss on the L2-normalised h, squared Euclidean distance, margin 0.2, mean of the hinge;
- L_P = mean_i sum_k (h_ik - 0.5)^2 on the un-normalised h, *maximised* (pushes outputs away from 0.5);
- L_B = mean_i ((1/K) sum_k h_ik - 0.5)^2, the balance of each code over its own bits (not per bit over the
  batch).
The regularisers are separate objects (PushLoss, BitBalanceLoss) so other methods can reuse them.
"""

from __future__ import annotations

import torch
from torch import nn

from rsir.losses.triplet import IndicesTuple, SquaredEuclidean, TripletMarginLoss


class PushLoss(nn.Module):
    """-(beta/K) * mean_i sum_k (h_ik - 0.5)^2: its minimisation drives each output away from 0.5."""

    def __init__(self, beta: float = 0.001) -> None:
        super().__init__()
        self.beta = beta

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        k = h.shape[1]
        return -(self.beta / k) * ((h - 0.5) ** 2).sum(1).mean()


class BitBalanceLoss(nn.Module):
    """gamma * mean_i (mean_k h_ik - 0.5)^2: each code should have as many ones as zeros."""

    def __init__(self, gamma: float = 1.0) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.gamma * ((h.mean(1) - 0.5) ** 2).mean()


class MilanLoss(nn.Module):
    """Triplet (normalised outputs) + push (subtracted) + bit balance; returns the total and its parts."""

    def __init__(self, margin: float = 0.2, beta: float = 0.001, gamma: float = 1.0) -> None:
        super().__init__()
        self.triplet = TripletMarginLoss(margin, SquaredEuclidean(normalize=True))
        self.push = PushLoss(beta)
        self.balance = BitBalanceLoss(gamma)

    def forward(self, h: torch.Tensor, indices_tuple: IndicesTuple) -> tuple[torch.Tensor, dict[str, float]]:
        lt = self.triplet(h, indices_tuple)
        lp = self.push(h)
        lb = self.balance(h)
        total = lt + lp + lb
        return total, {"triplet": float(lt.detach()), "push": float(lp.detach()), "balance": float(lb.detach())}
