#!/usr/bin/env bash
# One call on a lent GPU: the encoder benchmark, bf16/compile on the GPU, and one `paper`-profile
# pretraining seed with bf16 (and torch.compile when it works there), all within GPU_CHECK_BUDGET_S
# (default 480 s = 8 min), then bench/results/gpu_check.json.
#
#   bash bench/gpu_check.sh            # from the project root; installs nothing, uses .venv (or $TRLS_PY)
#
# Without a GPU (no nvidia-smi, or it lists none) it says so and exits 0, writing nothing. The pretraining
# runs in a scratch root whose data/ links to this checkout's (it needs data/spectrograms/epilepsy: carry
# data/ to the machine), so models/ here is never touched. A step past its bound is stopped (timeout) and
# reported; the pretraining seed keeps its per-epoch checkpoint in the scratch root.
# GPU_CHECK_DRY_RUN=1 runs the same steps on the CPU at toy sizes (to test this script without a GPU), writing
# /tmp/gpu_check_dry.json unless GPU_CHECK_OUT says otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."

PY="${TRLS_PY:-.venv/bin/python}"
BUDGET="${GPU_CHECK_BUDGET_S:-480}"
DRY="${GPU_CHECK_DRY_RUN:-0}"
if [[ "$DRY" == 1 ]]; then OUT="${GPU_CHECK_OUT:-/tmp/gpu_check_dry.json}"; else OUT="${GPU_CHECK_OUT:-bench/results/gpu_check.json}"; fi
START=$(date +%s)

if [[ "$DRY" != 1 ]]; then
    if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
        echo "gpu_check: no GPU on this machine (nvidia-smi absent or lists none); nothing run, nothing written."
        exit 0
    fi
fi
if [[ ! -x "$PY" ]]; then
    echo "gpu_check: $PY not found: run from a checkout with its .venv (make setup), or set TRLS_PY" >&2
    exit 1
fi

if [[ "$DRY" != 1 ]] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: a GPU is present but $PY's torch cannot use it ($("$PY" -c 'import torch; print(torch.__version__)')):" \
        "this venv has a CPU build of torch; nothing run" >&2
    exit 1
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true PREFECT_HOME="$WORK/.prefect"

if [[ "$DRY" == 1 ]]; then
    DEVICE=cpu
    ENC_ARGS=(--quick --device cpu)
    PREC_ARGS=(--device cpu --steps 1 --batch 8 --variants fp32,bf16)
    PRE_SETS=(--set pretrain.device=cpu --set pretrain.epochs=1 --set pretrain.subset_fraction=0.05
              --set pretrain.threads=1 --set model.tfrnn.dim=8 --set model.tfrnn.depth=1)
    nvidia-smi() { echo "dry run, no GPU"; }
else
    DEVICE=cuda
    ENC_ARGS=(--device cuda)
    PREC_ARGS=(--device cuda --profile paper --steps 5 --variants fp32,bf16,fp32+compile,bf16+compile)
    PRE_SETS=(--set pretrain.device=cuda)
fi

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# step NAME SECONDS CMD...: runs CMD under a timeout, logs to $WORK/NAME.log, records rc and wall seconds
step() {
    local name=$1 limit=$2; shift 2
    if (( limit < 10 )); then
        echo "gpu_check: no time left for $name" | tee "$WORK/$name.log"
        echo "skipped 0" > "$WORK/$name.rc"; return
    fi
    echo "gpu_check: $name (at most ${limit}s): $*"
    local t0; t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" > "$WORK/$name.log" 2>&1
    local rc=$?
    echo "$rc $(( $(date +%s) - t0 ))" > "$WORK/$name.rc"
    tail -3 "$WORK/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$WORK/gpu.txt" 2>&1
step encoder_bench 120 "$PY" bench/bench_encoder.py "${ENC_ARGS[@]}" --out "$WORK/encoder.json"
step precision_bench 150 "$PY" bench/bench_precision.py "${PREC_ARGS[@]}" --out "$WORK/precision.json"

COMPILE=$("$PY" - "$WORK/precision.json" <<'EOF'
import json, sys
try:
    runs = json.load(open(sys.argv[1]))["runs"]
except (OSError, ValueError, KeyError):
    runs = []
ok = any(r.get("variant") == "bf16+compile" and "error" not in r for r in runs)
print("true" if ok else "false")
EOF
)
echo "gpu_check: pretrain.compile=$COMPILE (bf16+compile $([[ $COMPILE == true ]] && echo worked || echo failed or was not tried))"

mkdir -p "$WORK/root"
ln -s "$PWD/data" "$WORK/root/data"
step pretrain_paper_seed0 $(( $(left) - 20 )) "$PY" -c "from trls_core.cli import main; main()" pretrain --profile paper --seed 0 \
    --root "$WORK/root" --set pretrain.precision=bf16 --set "pretrain.compile=$COMPILE" "${PRE_SETS[@]}"

"$PY" - "$WORK" "$OUT" "$DEVICE" "$COMPILE" "$BUDGET" "$DRY" <<'EOF'
import glob, json, os, sys, time
work, out, device, compile_, budget, dry = sys.argv[1:7]

def read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def status(name):
    try:
        rc, wall = open(os.path.join(work, name + ".rc")).read().split()
    except OSError:
        return {"rc": None}
    tail = open(os.path.join(work, name + ".log"), errors="replace").read()[-1500:]
    res = {"rc": None if rc == "skipped" else int(rc), "wall_s": int(wall), "timed_out": rc in ("124", "137")}
    if rc not in ("0",):
        res["log_tail"] = tail
    return res

pre = status("pretrain_paper_seed0")
model = sorted(glob.glob(os.path.join(work, "root", "models", "*", "*_seed0")))
info = read(os.path.join(model[0], "encoder.json")) if model else None
if info:
    hist = info.get("history", [])
    pre.update(
        epochs_done=len(hist),
        final_loss=hist[-1]["loss"] if hist else None,
        mean_epoch_s=round(sum(h["seconds"] for h in hist) / len(hist), 2) if hist else None,
        n_train_windows=info.get("n_train_windows"),
        fingerprint=info.get("fingerprint"),
        losses=[round(h["loss"], 5) for h in hist],
    )
elif model:  # stopped by the timeout: what the last checkpoint holds
    pre["note"] = "no encoder.json: stopped before the last epoch; see log_tail"
doc = {
    "what": "bench/gpu_check.sh: encoder benchmark, bf16/compile step times, one paper-profile pretraining seed "
    "(pretrain.precision=bf16, pretrain.compile as probed)",
    "dry_run_on_cpu": dry == "1",
    "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "device": device,
    "gpu": open(os.path.join(work, "gpu.txt")).read().strip(),
    "budget_s": int(budget),
    "compile_used": compile_ == "true",
    "encoder_bench": {**status("encoder_bench"), "result": read(os.path.join(work, "encoder.json"))},
    "precision_bench": {**status("precision_bench"), "result": read(os.path.join(work, "precision.json"))},
    "pretrain_paper_seed0": pre,
}
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
tmp = out + ".tmp"
with open(tmp, "w") as f:
    json.dump(doc, f, indent=1)
os.replace(tmp, out)
ok = all((doc[k].get("rc") == 0) for k in ("encoder_bench", "precision_bench", "pretrain_paper_seed0"))
print(f"gpu_check: wrote {out}; " + ("all steps finished" if ok else "some step failed or timed out (see the file)"))
sys.exit(0 if ok else 1)
EOF
