#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py): bf16, DDP / FSDP2, attention kernels, torch.compile, ViT-L
# throughput + MFU, a ViT-S learning curve; one line each in bench/results/gpu.txt. <= 8 min on an H100/H200.
#
#   bash bench/gpu_check.sh                   # on a GPU machine with cryofm's dependencies installed
#   bash bench/gpu_check.sh --dry-run         # tiny sizes on the CPU (what tests/test_gpu_check.py runs)
#   bash bench/gpu_check.sh --prepare-wheels  # here: the pure-Python dependencies a bare PyTorch image
#                                             # lacks, as wheels in .whl/ (git-ignored) to carry along
#
# On a bare PyTorch image (python3 with torch, timm missing or old, no hydra): a .whl/ folder beside
# this repo's root is installed into /tmp/site first; the results (and the learning curve's PNG) are
# copied to $OUT when that variable names a folder.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(hydra-core==1.3.8 omegaconf==2.3.1 webdataset==1.0.2 braceexpand==0.1.7 timm==1.0.31)
SDISTS=(antlr4-python3-runtime==4.9.3)   # pure Python, published as a source archive only: built here

if [[ "${1:-}" == "--prepare-wheels" ]]; then
  py=.venv/bin/python; [[ -x $py ]] || py=python3
  rm -rf .whl && mkdir -p .whl
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform any -d .whl "${WHEELS[@]}"
  "$py" -m pip wheel -q --no-deps -w .whl "${SDISTS[@]}"
  ls -la .whl
  exit 0
fi

py=.venv/bin/python
if [[ ! -x $py ]]; then
  py=python3
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
export PYTHONUNBUFFERED=1
rc=0
"$py" bench/gpu_check.py "$@" || rc=$?
if [[ -n "${OUT:-}" && -d "${OUT:-}" ]]; then
  cp bench/results/gpu*.txt "$OUT"/ 2>/dev/null || true
  cp bench/results/learning.txt bench/results/learning_gpu_vits_control.png "$OUT"/ 2>/dev/null || true
fi
exit $rc
