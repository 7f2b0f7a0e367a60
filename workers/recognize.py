"""`python workers/recognize.py`: the Genesis recognize worker (see genesis/launch.py)."""

from genesis.launch import main

if __name__ == "__main__":
    main("recognize")
