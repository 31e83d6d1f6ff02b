"""Joint compression and hashing (SCI-CBIR, METHODS.md section 8): a learned codec whose quantised latent is
both the stored form of a patch and the input of a hashing head, so a compressed archive is indexed from its
bitstreams without reconstructing pixels.

- :mod:`.entropy`: factorised entropy model, fixed-point tables, constriction ANS coding, framed bitstreams;
- :mod:`.codec`: the network (analysis, synthesis, entropy model, hashing head), codec directories, ``Codec``;
- :mod:`.train`: staged training (rate-distortion, then joint with automatic loss weighting);
- :mod:`.archive`: ``rsir compress``; :mod:`.encoder`: the ``codec`` encoder type (codes from pixels or streams).
"""
