#!/usr/bin/env bash
# The GPU check: the CUDA detector and the `gpu` queue on a machine with an NVIDIA GPU.
#
#   scripts/gpu_check.sh [OUT_DIR]
#
# 1. `python -m genesis.bench.gpu`: the ultralytics detector on CPU and on cuda:0, one frame per call
#    (the product's path) and batched, and the largest difference of the raw network outputs.
# 2. The distributed chain with the detect stage routed to the `gpu` queue, consumed by a worker started
#    with `--gpu 0` (a batching threads pool: the frames of its running tasks in one predict call), on a
#    clip; then the same clip embedded on cuda:0: `results` must be equal.
# 3. `python -m genesis.bench gpu --cameras $CAMERAS` (32): simulated 720p cameras at 5 fps through capture,
#    the batching `gpu` worker, recognize and store workers into PostgreSQL: frames/s end to end, p50/p95
#    capture-to-stored, detector batch sizes, GPU utilisation and memory, each camera's results against the
#    embedded run; then the same cameras unpaced (--fps 0) for the throughput ceiling, batched and with
#    one frame per detector call (--batch 1). Needs PostgreSQL:
#    PG_ADMIN=postgresql://... , or initdb/pg_ctl on the PATH (or in PG_BIN) for a throw-away cluster;
#    without either, step 3 is skipped and says so. SKIP_CAMERAS=1 skips it.
#
# The detector is YOLOv8n rebuilt as a torch network from the shipped int8 ONNX export (no download).
# Needs: python with torch (CUDA), the Genesis requirements, redis-server (REDIS_SERVER=path), the models
# folder (GENESIS_SHARED_DIR/models) and the clip (CLIP=path). Offline machines can take the Python
# packages as wheels in WHEELS=dir (installed with --no-deps before anything else).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/genesis-gpu-check}}
mkdir -p "$OUT"
SHARED=${GENESIS_SHARED_DIR:-../shared}
CLIP=${CLIP:-$SHARED/data/video/opencv4nodejs_people.mp4}
ONNX=${ONNX:-$SHARED/models/person/yolov8n_int8.onnx}
FRAMES=${FRAMES:-150}
CAMERAS=${CAMERAS:-32}
CAMERA_FRAMES=${CAMERA_FRAMES:-40}
DEVICE=${DEVICE:-cuda:0}   # DEVICE=cpu: a dry run of the script on a machine without a GPU
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

if [ -n "${WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps "$WHEELS"/*.whl 2>&1 | tail -2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$OUT/summary.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/summary.txt"

WORK=$(mktemp -d)
if [ -z "${SKIP_BENCH:-}" ]; then
log "1. detector on cpu and $DEVICE"
DEVICES=(--device cpu); [ "$DEVICE" = cpu ] || DEVICES+=(--device "$DEVICE")
$PY -m genesis.bench.gpu --source "$CLIP" --from-onnx "$ONNX" --frames 64 --batch 1 8 32 \
  "${DEVICES[@]}" --json "$OUT/detector.json" --work-dir "$WORK/bench" 2>&1 | grep -v Ultralytics | tee -a "$OUT/summary.txt"
else
$PY -c "import sys; from pathlib import Path; from genesis.bench.gpu import dequantized_torch_weights as d; \
d(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))" "$ONNX" "$WORK/bench/yolov8n_dequantized.pt" "$WORK/bench/.ultralytics"
fi
# WEIGHTS_PT=a real ultralytics .pt (yolov8n.pt, yolo11n.pt) where one can be copied onto the machine: steps 2
# and 3 then run it instead of the network rebuilt from the int8 export; HALF=1: FP16 (ultralytics' own).
WEIGHTS=${WEIGHTS_PT:-$WORK/bench/yolov8n_dequantized.pt}
[ -f "$WEIGHTS" ] || { log "FAIL: no torch weights"; exit 1; }

log "2. the gpu queue: distributed chain vs embedded, detector on $DEVICE"
REDIS_PORT=6399
QUEUE=gpu; GPU_FLAG=(--gpu 0)
[ "$DEVICE" = cpu ] && { QUEUE=detect; GPU_FLAG=(); }
"${REDIS_SERVER:-redis-server}" --port $REDIS_PORT --daemonize yes --save '' --appendonly no --dir "$WORK" \
  --logfile "$WORK/redis.log"
sleep 1
mkdir -p "$WORK/models"
cp "$SHARED"/models/face_detection_yunet_2023mar_int8bq.onnx "$SHARED"/models/face_recognition_sface_2021dec_int8bq_ort.onnx "$WORK/models/"
cat > "$WORK/settings.yaml" <<EOF
database_url: sqlite:///$WORK/dist.db
broker_url: redis://127.0.0.1:$REDIS_PORT/0
redis_url: redis://127.0.0.1:$REDIS_PORT/1
models:
  dir: $WORK/models
detector:
  backend: ultralytics
  weights: $WEIGHTS
  half: $([ -n "${HALF:-}" ] && echo true || echo false)
  device: $DEVICE
distributed:
  detect_queue: $QUEUE
recognition:
  enabled: ${RECOGNITION:-true}   # RECOGNITION=false where deepface's optional packages are missing
cameras:
  - id: gpu
    source: $CLIP
    zones:
      - name: walkway
        points: [[0.25, 0.45], [0.75, 0.45], [0.75, 1.0], [0.25, 1.0]]
EOF
export GENESIS_CONFIG=$WORK/settings.yaml
PIDS=()
$PY workers/detect.py "${GPU_FLAG[@]}" --no-http >"$WORK/detect.log" 2>&1 & PIDS+=($!)
$PY workers/recognize.py --no-http >"$WORK/recognize.log" 2>&1 & PIDS+=($!)
$PY workers/store.py --no-http >"$WORK/store.log" 2>&1 & PIDS+=($!)
$PY workers/analytics.py --no-http >"$WORK/analytics.log" 2>&1 & PIDS+=($!)
cleanup() { kill "${PIDS[@]}" 2>/dev/null; sleep 2; kill -9 "${PIDS[@]}" 2>/dev/null;
            cp "$WORK"/*.log "$OUT/" 2>/dev/null; }
trap cleanup EXIT
$PY -m genesis.cli.main db upgrade >/dev/null
sleep 8
t0=$(date +%s)
$PY -m genesis.cli.main capture --camera gpu --max-frames "$FRAMES" --no-http 2>&1 | tail -3 | tee -a "$OUT/summary.txt"
$PY -m genesis.cli.main drain --timeout 300 2>&1 | tail -3 | tee -a "$OUT/summary.txt"
t1=$(date +%s)
echo "distributed: $FRAMES frames in $((t1 - t0)) s (capture to stored)" | tee -a "$OUT/summary.txt"
$PY -m genesis.cli.main report --camera gpu --out "$OUT/distributed" 2>&1 | tail -2
GENESIS_DATABASE_URL=sqlite:///$WORK/emb.db $PY -m genesis.cli.main run --camera gpu --source "$CLIP" \
  --max-frames "$FRAMES" --out "$OUT/embedded" 2>&1 | tail -12 | tee -a "$OUT/summary.txt"
grep -c "cuda" "$WORK/detect.log" >/dev/null && grep -m3 -i "cuda\|gpu" "$WORK/detect.log" | tee -a "$OUT/summary.txt"
$PY - "$OUT" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
out = sys.argv[1]
d = json.load(open(f"{out}/distributed/report.json"))["results"]
e = json.load(open(f"{out}/embedded/report.json"))["results"]
print("tracks distributed/embedded:", len(d.get("tracks", [])), len(e.get("tracks", [])))
print("RESULTS EQUAL" if d == e else "RESULTS DIFFER: " + ", ".join(k for k in e if d.get(k) != e.get(k)))
EOF

[ -n "${SKIP_CAMERAS:-}" ] && exit 0
cleanup; PIDS=()  # step 2's workers off the GPU and the CPUs
log "3. $CAMERAS cameras through the batching gpu worker (python -m genesis.bench gpu --cameras $CAMERAS)"
PG_URL=${PG_ADMIN:-}
if [ -z "$PG_URL" ]; then
  PGB=${PG_BIN:-$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1)")}
  if [ -x "$PGB/initdb" ]; then
    PGDATA=$WORK/pg; PG_PORT=5499
    if [ "$(id -u)" = 0 ]; then  # initdb refuses root: a throw-away user owns the cluster
      id genesispg >/dev/null 2>&1 || useradd -M genesispg
      mkdir -p "$PGDATA" && chown genesispg "$PGDATA" && chmod 755 "$WORK"
      RUN_PG=(su genesispg -s /bin/sh -c)
    else
      RUN_PG=(sh -c)
    fi
    "${RUN_PG[@]}" "'$PGB/initdb' -D '$PGDATA' -U postgres --auth=trust >'$PGDATA.init.log' 2>&1 && \
      '$PGB/pg_ctl' -D '$PGDATA' -o '-p $PG_PORT -k /tmp -c listen_addresses=127.0.0.1' -l '$PGDATA.log' -w start \
      >/dev/null" && PG_URL=postgresql://postgres@127.0.0.1:$PG_PORT/postgres
  fi
fi
if [ -z "$PG_URL" ]; then
  log "SKIPPED: no PostgreSQL (set PG_ADMIN, or put initdb/pg_ctl on the PATH or in PG_BIN)"
  exit 0
fi
CAM_ARGS=(--cameras "$CAMERAS" --frames "$CAMERA_FRAMES" --weights "$WEIGHTS" --pg-admin "$PG_URL"
          --broker "redis://127.0.0.1:$REDIS_PORT/6" --frames-redis "redis://127.0.0.1:$REDIS_PORT/7" --markdown)
[ "${RECOGNITION:-true}" = false ] && CAM_ARGS+=(--no-recognition)
[ -n "${HALF:-}" ] && CAM_ARGS+=(--half)
[ "$DEVICE" = cpu ] && CAM_ARGS+=(--cpu)
unset GENESIS_CONFIG
GENESIS_MODELS_DIR=$WORK/models $PY -m genesis.bench gpu "${CAM_ARGS[@]}" --fps 5 --check 2>&1 \
  | grep -v Ultralytics | tee -a "$OUT/summary.txt" "$OUT/cameras_paced.txt"
GENESIS_MODELS_DIR=$WORK/models $PY -m genesis.bench gpu "${CAM_ARGS[@]}" --fps 0 --frames "$((CAMERA_FRAMES * 2))" 2>&1 \
  | grep -v Ultralytics | tee -a "$OUT/summary.txt" "$OUT/cameras_unpaced.txt"
log "3b. the same unpaced, one frame per detector call (--batch 1: the worker before batching)"
GENESIS_MODELS_DIR=$WORK/models $PY -m genesis.bench gpu "${CAM_ARGS[@]}" --fps 0 --frames "$((CAMERA_FRAMES * 2))" \
  --batch 1 2>&1 | grep -v Ultralytics | tee -a "$OUT/summary.txt" "$OUT/cameras_unbatched.txt"
[ -n "${PGDATA:-}" ] && "${RUN_PG[@]}" "'$PGB/pg_ctl' -D '$PGDATA' -m fast stop >/dev/null" || true
