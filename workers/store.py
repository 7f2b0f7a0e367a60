"""`python workers/store.py`: the Genesis store worker (see genesis/ops/launch.py)."""

from genesis.ops.launch import main

if __name__ == "__main__":
    main("store")
