#!/usr/bin/env bash
# The GPU benchmarks in one go, for a machine with a CUDA GPU (run it once, keep the JSON):
#
#   1. streaming (benchmarks/streaming.py --device cuda): GRID-size random-weight model, step
#      p50/p99 of one session, the most sessions that stay real time (batched on one worker),
#      one live session through the InferenceWorker; fp32 and bf16
#      -> streaming_<dev>.json
#   2. N sessions batched: tick p50/p99 (stack states, one forward, split, frames to uint8)
#      for fixed N and for the real-time N that step 1 found; fp32 and bf16
#      -> streaming_batched_<dev>.json
#   3. training steps (benchmarks/train_step.py): fp32 vs bf16 autocast, batch 4 and 16
#      -> train_step_<dev>.json
#   4. offline VideoAnimator on the GPU (3 s, 30 s, 10 min clips; needs soxr, not PyAV)
#      -> offline_<dev>.json
#   plus gpu_env.txt (nvidia-smi, versions). Each step has its own time limit; a failing step
#   is reported and the others still run.
#
# Usage:  OUT=/some/dir bash benchmarks/gpu_run.sh            (default OUT: benchmarks/results)
#         WHEELS=dir  installs the wheels in dir first (e.g. soxr where the machine lacks it)
#         DEVICE=cpu QUICK=1 bash benchmarks/gpu_run.sh      a quick check of the script on a CPU
# How it was run on a lent H100 (from a frozen copy of the repository, wheels for what the
# machine lacks beside it): git archive HEAD | tar -x -C .gpubench/src, soxr's cp312 wheel in
# .gpubench/whl, then there: cd .gpubench/src && WHEELS=$PWD/../whl OUT=$OUT bash benchmarks/gpu_run.sh
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
OUT=${OUT:-$HERE/results}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
DEV=${DEVICE%%:*}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -n "${WHEELS:-}" ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu_run_site "$WHEELS"/*.whl \
        && export PYTHONPATH="/tmp/gpu_run_site${PYTHONPATH:+:$PYTHONPATH}" || echo "wheel install FAILED"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
cd "$REPO" || exit 1

if [ "$QUICK" = 1 ]; then
    S_ARGS="--steps 6 --max-sessions 2 --worker-seconds 1"; B_NS="1,2"; B_STEPS=4
    T_ARGS="--tiny --batch 2 --steps 2 --warmup 1"; O_LENGTHS="3"; O_CHUNKS="16"
else
    S_ARGS="--steps 120 --max-sessions 1024 --worker-seconds 4"; B_NS="1,8,32,128"; B_STEPS=100
    T_ARGS="--batch 4,16 --steps 30 --warmup 5"; O_LENGTHS="3,30,600"; O_CHUNKS="16,128"
fi
failed=()
step() {  # step NAME SECONDS command...
    local name=$1 secs=$2; shift 2
    echo "=== $name (limit ${secs} s) $(date -u +%H:%M:%S)"
    local t0=$SECONDS
    timeout "$secs" "$@"
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - t0)) s"
    [ $rc = 0 ] || failed+=("$name($rc)")
}

{
    date -u
    nvidia-smi 2>&1 || echo "no nvidia-smi"
    $PY -c "import sys, torch, numpy; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__, 'gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"
    $PY -c "import soxr; print('soxr', soxr.__version__)" 2>&1
    $PY -c "import numba; print('numba', numba.__version__)" 2>&1
    nproc; free -g 2>/dev/null | head -2
} > "$OUT/gpu_env.txt" 2>&1
cat "$OUT/gpu_env.txt"

NOTE="GPU run via benchmarks/gpu_run.sh; $(nproc) CPU cores"

step streaming 240 $PY benchmarks/streaming.py --device "$DEVICE" $S_ARGS --out "$OUT/streaming_$DEV.json" --note "$NOTE"

step batched 90 $PY - "$DEVICE" "$B_NS" "$B_STEPS" "$OUT/streaming_$DEV.json" "$OUT/streaming_batched_$DEV.json" <<'EOF'
"""Tick p50/p99 of N sessions stepped together (streaming.tick_times), fp32 and bf16."""
import json, sys, time
from pathlib import Path
import torch
sys.path.insert(0, "benchmarks")
import streaming as sb  # its model helpers too (the GRID-size random model)

device, ns, steps, rt_json, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5])
torch.set_grad_enabled(False)
torch.set_num_threads(2)
model = sb.random_model(sb.grid_config(), seed=0).to(torch.device(device))
period = 1000.0 / float(model.config.video_rate)
rt = {}
if rt_json.is_file():
    for name, r in json.loads(rt_json.read_text())["results"].items():
        rt[name] = r["realtime_sessions"]
result = {"benchmark": "streaming_batched", "what": "tick = stack N session states, one engine.forward (T=1), "
          "split the states, frames to uint8 on the host; GRID-size random weights",
          "device": device, "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
          "torch": torch.__version__, "frame_period_ms": period, "realtime_sessions_from": rt_json.name,
          "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": {}}
for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
    model.set_inference_dtype(dtype)
    sizes = sorted({int(n) for n in ns.split(",")} | ({rt[name]} if rt.get(name) else set()))
    table = {}
    for n in sizes:
        p = sb._pct(sb.tick_times(model, n, steps, warmup=5))
        p["per_session_ms"] = round(p["mean_ms"] / n, 3)
        p["real_time"] = p["p99_ms"] < period
        table[str(n)] = p
        print(f"{name} N={n:4d}: tick p50 {p['p50_ms']:7.2f} ms, p99 {p['p99_ms']:7.2f} ms "
              f"({p['per_session_ms']:.3f} ms a session){'' if p['real_time'] else '  > deadline'}", flush=True)
    result["results"][name] = {"realtime_sessions": rt.get(name), "ticks": table}
out.write_text(json.dumps(result, indent=2) + "\n")
print(f"wrote {out}")
EOF

step train_step 90 $PY benchmarks/train_step.py --device "$DEVICE" $T_ARGS --out "$OUT/train_step_$DEV.json" --note "$NOTE"

step offline 130 $PY - "$DEVICE" "$O_LENGTHS" "$O_CHUNKS" "$OUT/offline_$DEV.json" <<'EOF'
"""VideoAnimator on the device alone (offline.py's worker, one subprocess per run)."""
import json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, "benchmarks")
import offline as ob
import streaming as sb  # its model helpers (the GRID-size random model)

device, lengths, chunks, out = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
report = {"benchmark": "offline VideoAnimator (int16 44.1 kHz array input, aligned=True still, random GRID-size "
          "checkpoint), device runs only", "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
          "machine": ob._machine(), "results": []}
with tempfile.TemporaryDirectory(prefix="sda-bench-") as tmp:
    ckpt = sb.random_model(sb.grid_config(), seed=0).save(Path(tmp) / "random_grid_size.pt")
    secs, chunks = [float(s) for s in lengths.split(",")], [int(c) for c in chunks.split(",")]
    runs = [(s, chunks[0]) for s in secs] + [(30.0, c) for c in chunks[1:] if 30.0 in secs]
    for seconds, chunk in runs:
        repeat = 3 if seconds <= 10 else 2 if seconds <= 60 else 1
        try:
            r = ob._run_one(ckpt, device, seconds, 2, chunk, repeat)
        except Exception as exc:  # keep the other runs
            print(f"{device} {seconds:g} s chunk {chunk}: FAILED {str(exc)[-1500:]}", flush=True)
            report["results"].append({"device": device, "clip_s": seconds, "chunk_frames": chunk, "error": str(exc)[-1500:]})
            continue
        report["results"].append(r)
        print(f"{device} {seconds:6.0f} s clip, chunk {chunk:4d}: {r['frames']:6d} frames, {r['frames_per_s']:8.1f} frames/s "
              f"({r['realtime_factor']:.1f}x real time), peak RSS {r['peak_rss_gb']:.2f} GB, "
              f"GPU {r.get('peak_gpu_mem_gb', 0):.2f} GB", flush=True)
        out.write_text(json.dumps(report, indent=2) + "\n")  # after each run: a later time-out keeps these
out.write_text(json.dumps(report, indent=2) + "\n")
print(f"wrote {out}")
EOF

echo "=== done $(date -u +%H:%M:%S); failed: ${failed[*]:-none}"
ls -la "$OUT"
[ ${#failed[@]} = 0 ]
