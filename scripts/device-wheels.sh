#!/usr/bin/env bash
# Here (with network): what scripts/device-check.sh needs on the GPU machine of the `device` tool,
# whose image (Python 3.12, its own torch) lacks some packages that tests/test_cuda.py and
# benchmarks/bench_autoattack.py import, and the Fashion-MNIST files. Writes .whl/ (wheels for
# CPython 3.12 at the versions requirements.lock pins) and .device-data/; both are ignored by git
# and travel with `carry: [".whl", ".device-data"]` (about 37 MB together).
set -euo pipefail
cd "$(dirname "$0")/.."
# the import closure of those files minus the image's packages (KINDS.md of the device tool, 2026-11-17)
NAMES="annotated-types pydantic_core pydantic typing-inspection typing_extensions cffi pycparser soundfile
platformdirs pytz torchattacks opacus"
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
--platform manylinux2014_x86_64 --platform manylinux1_x86_64"
rm -rf .whl .device-data
mkdir -p .whl .device-data
for name in $NAMES; do
    pin=$(grep -i -h "^${name}==" requirements.lock requirements-nodeps.txt | head -1)
    test -n "$pin" || { echo "$name: not pinned in requirements.lock" >&2; exit 1; }
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        $PLATFORMS -d .whl "$pin"
done
cp /usr/share/datasets/fashion-mnist/*.gz .device-data/
du -sh .whl .device-data
