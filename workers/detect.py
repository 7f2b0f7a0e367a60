"""`python workers/detect.py`: the Genesis detect worker (see genesis/launch.py)."""

from genesis.launch import main

if __name__ == "__main__":
    main("detect")
