"""`python workers/analytics.py`: the Genesis analytics worker (see genesis/ops/launch.py)."""

from genesis.ops.launch import main

if __name__ == "__main__":
    main("analytics")
