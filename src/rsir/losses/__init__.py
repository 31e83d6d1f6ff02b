"""Training objectives, one per module; regularisers are separate terms."""

from rsir.losses.classification import FocalLoss, MultiLabelBCE
from rsir.losses.contrastive import ContrastiveLoss
from rsir.losses.milan import BitBalanceLoss, MilanLoss, PushLoss
from rsir.losses.triplet import Euclidean, SquaredEuclidean, TripletMarginLoss

__all__ = ["BitBalanceLoss", "ContrastiveLoss", "Euclidean", "FocalLoss", "MilanLoss", "MultiLabelBCE", "PushLoss",
           "SquaredEuclidean", "TripletMarginLoss"]
