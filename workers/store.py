"""`python workers/store.py`: the Genesis store worker (see genesis/launch.py)."""

from genesis.launch import main

if __name__ == "__main__":
    main("store")
