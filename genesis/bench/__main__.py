"""``python -m genesis.bench``: the pipeline benchmark (see ``genesis.bench.pipeline``);
``python -m genesis.bench cameras``: cameras per machine (see ``genesis.bench.cameras``);
``python -m genesis.bench storage``: bytes per camera-day and query times (see ``genesis.bench.storage``);
``python -m genesis.bench gpu --cameras N``: N cameras through the batching detect worker
(``genesis.bench.gpu_cameras``); without ``--cameras``: the detector alone, per frame and batched
(``genesis.bench.gpu``);
``python -m genesis.bench soak``: live cameras under overload, every frame counted (see ``genesis.bench.soak``)."""

import sys

from genesis.backends.weights import WeightsError


def _main() -> None:
    """The benchmark named by the first argument."""
    if len(sys.argv) > 1 and sys.argv[1] == "cameras":
        from genesis.bench.cameras import main as cameras_main

        cameras_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "gpu":
        if any(a == "--cameras" or a.startswith("--cameras=") for a in sys.argv[2:]):
            from genesis.bench.gpu_cameras import main as gpu_cameras_main

            gpu_cameras_main(sys.argv[2:])
        else:
            from genesis.bench.gpu import main as gpu_main

            gpu_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "soak":
        from genesis.bench.soak import main as soak_main

        soak_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "storage":
        from genesis.bench.storage import main as storage_main

        storage_main(sys.argv[2:])
    else:
        from genesis.bench.pipeline import main

        main()


try:
    _main()
except WeightsError as exc:  # a models folder without the weights: one line, what to run, no traceback
    sys.exit(f"bench: {exc}")
