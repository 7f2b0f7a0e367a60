"""``python -m genesis.bench``: the pipeline benchmark (see ``genesis.bench.pipeline``)."""

from genesis.bench.pipeline import main

main()
