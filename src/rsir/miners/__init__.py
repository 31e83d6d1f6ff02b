"""Triplet miners: each is called with (embeddings, labels) and returns (anchors, positives, negatives)."""

from rsir.miners.batch_hard import BatchHardMiner
from rsir.miners.milan_pairs import FixedTripletMiner, MilanPairsBatchSampler
from rsir.miners.multilabel_diverse import MultiLabelDiverseMiner, RelevanceFirstDiverseMiner
from rsir.miners.random import RandomTripletMiner
from rsir.miners.semi_hard import SemiHardMiner

MINERS = {"random": RandomTripletMiner, "batch-hard": BatchHardMiner, "semi-hard": SemiHardMiner,
          "diverse": MultiLabelDiverseMiner, "diverse-rf": RelevanceFirstDiverseMiner}

__all__ = ["MINERS", "BatchHardMiner", "FixedTripletMiner", "MilanPairsBatchSampler", "MultiLabelDiverseMiner",
           "RandomTripletMiner", "RelevanceFirstDiverseMiner", "SemiHardMiner"]
