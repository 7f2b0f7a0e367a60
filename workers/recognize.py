"""`python workers/recognize.py`: the Genesis recognize worker (see genesis/ops/launch.py)."""

from genesis.ops.launch import main

if __name__ == "__main__":
    main("recognize")
