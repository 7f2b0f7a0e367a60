"""Benchmarks, never imported by the product.

``python -m genesis.bench`` (the pipeline against the detector alone), ``python -m genesis.bench.distributed``
(the distributed chain), ``python -m genesis.bench cameras`` (cameras per machine), ``python -m genesis.bench
storage`` (bytes per camera-day and query times) and ``python -m genesis.bench.gallery`` (gallery search at scale).
"""
