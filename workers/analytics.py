"""`python workers/analytics.py`: the Genesis analytics worker (see genesis/launch.py)."""

from genesis.launch import main

if __name__ == "__main__":
    main("analytics")
