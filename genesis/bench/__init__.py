"""Benchmarks, never imported by the product.

``python -m genesis.bench`` (the pipeline against the detector alone), ``python -m genesis.bench.distributed``
(the distributed chain) and ``python -m genesis.bench.gallery`` (gallery search at scale).
"""
