#!/usr/bin/env bash
# There (the `device` tool's GPU machine, from the repository root, .whl and .device-data carried:
# run scripts/device-wheels.sh here first): the CUDA checks of issues 30 and 31. tests/test_cuda.py
# on CUDA, then the AutoAttack ensemble's throughput on CUDA beside torchattacks' (benchmarks); the
# logs and the benchmark's RESULTS.md come back under $OUT. About 5 minutes on an H100 (estimate).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 TRUSTTANGO_TEST_DEVICE=cuda TRUSTTANGO_DEVICE_RUN=1
mkdir -p /usr/share/datasets/fashion-mnist && cp .device-data/*.gz /usr/share/datasets/fashion-mnist/
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log"
tests=${PIPESTATUS[0]}
python3 -m benchmarks.bench_autoattack throughput --device cuda --min-seconds 30 2>&1 | tee "$OUT/bench.log"
cp benchmarks/RESULTS.md "$OUT/RESULTS.md"
exit "$tests"
