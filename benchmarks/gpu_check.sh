#!/usr/bin/env bash
# GPU check for a machine with one CUDA GPU, in under 5 minutes:
#   1. the CUDA tests (pytest -m cuda);
#   2. the benchmark with both towers on cuda:0 (fp32, then channels_last + bf16 autocast);
#   3. the two-device layout with tower b on the CPU (real cross-device copies at every crossing):
#      its logits and gradients against the same weights with both towers on cuda:0, and its speed.
# Usage: benchmarks/gpu_check.sh OUTDIR     (results: OUTDIR/*.txt, OUTDIR/*/bench.json, OUTDIR/summary.txt)
# Set GPU_CHECK_COMPILE=1 to add a torch.compile benchmark (adds a few minutes of compilation).
set -u
OUT=${1:?usage: benchmarks/gpu_check.sh OUTDIR}
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
test -x "$PY" || PY=python3
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
step() {  # step NAME SECONDS CMD...: run with a time limit, log to OUT/NAME.txt, record the exit status
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$name: exit $rc in $((SECONDS - t0)) s" | tee -a "$SUMMARY"
}

"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0), torch.__version__)" \
  | tee -a "$SUMMARY" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.txt" 2>&1

step pytest-cuda 120 "$PY" -m pytest tests -m cuda -q -p no:cacheprovider
step bench-cuda0-fp32 75 "$PY" benchmarks/bench.py --devices cuda:0 cuda:0 --reps 5 --no-loader --no-channels-last --out "$OUT/bench-cuda0-fp32"
step bench-cuda0-cl-bf16 60 "$PY" benchmarks/bench.py --devices cuda:0 cuda:0 --reps 5 --no-loader \
  --channels-last --amp bf16 --out "$OUT/bench-cuda0-cl-bf16"

step cross-device-check 60 "$PY" - <<'EOF'
"""Tower b on the CPU, tower a on cuda:0: same logits and gradients as both towers on cuda:0."""
import sys
sys.path[:0] = ["src", "."]
import torch
from alexnet.model import AlexNet
torch.manual_seed(0)
split = AlexNet(num_classes=1000, devices=("cuda:0", "cpu")).train()
same = AlexNet(num_classes=1000, devices=("cuda:0", "cuda:0")).train()
same.load_state_dict({k: v.to("cuda:0") for k, v in split.state_dict().items()})
x = torch.randn(8, 3, 227, 227) * 50
y = torch.randint(0, 1000, (8,))
split.eval(); same.eval()
with torch.no_grad():
    for trial in range(5):
        xe = torch.randn(8, 3, 227, 227) * 50
        a, b = split(xe.to("cuda:0")), same(xe.to("cuda:0"))
        err = (a - b).abs().max().item()
        print(f"eval trial {trial}: max |logit difference| {err:.3e}")
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-3), f"tower b on the CPU disagrees: {err}"
split.train(); same.train()
for m in (split, same):                                  # CPU and CUDA draw different dropout masks
    for t in (m.a, m.b):
        t.drop6.p = t.drop7.p = 0.0
grads = []
for m in (split, same):
    m.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(m(x.to("cuda:0")), y.to("cuda:0")).backward()
    grads.append([p.grad.detach().cpu() for p in m.parameters()])
gerr = max((g1 - g2).abs().max().item() / (g2.abs().max().item() + 1e-12) for g1, g2 in zip(*grads))
print(f"train (no dropout): worst relative gradient difference {gerr:.3e}")
assert gerr < 1e-3, gerr
print("cross-device check passed")
EOF

step bench-cuda0-cpu 90 "$PY" benchmarks/bench.py --devices cuda:0 cpu --batch 32 --reps 3 --iters 1 --warmup 1 \
  --no-loader --out "$OUT/bench-cuda0-cpu"

if [ "${GPU_CHECK_COMPILE:-0}" = 1 ]; then
  step bench-cuda0-compile 300 "$PY" benchmarks/bench.py --devices cuda:0 cuda:0 --reps 3 --no-loader --compile \
    --out "$OUT/bench-cuda0-compile"
fi
for f in "$OUT"/bench-*.txt; do echo "== $f"; grep -E "^(two-tower|grouped|torchvision|matmul|LRN)" "$f"; done >> "$SUMMARY"
cat "$SUMMARY"
