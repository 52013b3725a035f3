#!/usr/bin/env bash
# The CUDA check, on a machine with an NVIDIA GPU, CUDA PyTorch (its LibTorch), CMake, ninja and a C++ compiler,
# and no ITK: builds ITKCommon from ITK 5.2.1's sources (ITK_SOURCE, a source tree or tarball), this module's filter
# and model against PyTorch's LibTorch, makes two seeded random valid U-Nets with that PyTorch, and runs
# UNetCudaCheck on them. Used on the GPU machine lent to development sessions; the module's CI has no GPU.
#
#   scripts/cuda-check/run.sh ITK_SOURCE WORK_DIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
source_arg=${1:?usage: run.sh ITK_SOURCE WORK_DIR}
work=${2:?usage: run.sh ITK_SOURCE WORK_DIR}
mkdir -p "$work"
if [ -f "$source_arg" ]; then
  mkdir -p "$work/itk-source" && tar xJf "$source_arg" -C "$work/itk-source"
  itk_source=$work/itk-source
else
  itk_source=$source_arg
fi
python=${PYTHON:-python3}
torch_cmake=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

cmake -S "$itk_source" -B "$work/itk" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  -DBUILD_EXAMPLES=OFF -DITK_BUILD_DEFAULT_MODULES=OFF -DModule_ITKCommon=ON \
  -DCMAKE_POLICY_VERSION_MINIMUM=3.5 > "$work/itk-configure.log"
cmake --build "$work/itk" -j "$(nproc)" > "$work/itk-build.log"
cmake -S "$here" -B "$work/check" -G Ninja -DCMAKE_BUILD_TYPE=Release -DITK_DIR="$work/itk" \
  -DCMAKE_PREFIX_PATH="$torch_cmake" > "$work/check-configure.log"
cmake --build "$work/check" -j "$(nproc)"

"$python" - "$repo" "$work" <<'PY'
import sys, torch
sys.path.insert(0, sys.argv[1] + "/wrapping/Python")
from itk_unetsegmentation.networks import UNet
for dim, name in ((2, "unet2d.pt"), (3, "unet3d.pt")):
    torch.manual_seed(dim)
    net = UNet(dim=dim, in_channels=1, classes=3, base=16, depth=3 if dim == 2 else 2, valid=True).eval()
    torch.jit.save(torch.jit.script(net), f"{sys.argv[2]}/{name}")
PY
"$work/check/UNetCudaCheck" "$work/unet2d.pt" "$work/unet3d.pt"
