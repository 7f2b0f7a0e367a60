"""`python workers/detect.py`: the Genesis detect worker (see genesis/ops/launch.py)."""

from genesis.ops.launch import main

if __name__ == "__main__":
    main("detect")
