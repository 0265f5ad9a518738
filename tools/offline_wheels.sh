#!/usr/bin/env bash
# Download the wheels a GPU machine without network needs to run depthkit and its GPU check:
# DALI for CUDA 13 with its codec libraries and Python dependencies, the depthkit dependencies
# and albumentations (for the loader benchmark) that a torch 2.11 + CUDA 13 image lacks.
# Built for CPython 3.12 on manylinux x86_64; benchmarks/gpu/check.sh installs them there.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: tools/offline_wheels.sh [--split MIB] [OUTDIR]

Downloads, for CPython 3.12 manylinux x86_64 (pip download --no-deps --only-binary=:all:),
the wheels of nvidia-dali-cuda130 2.4.0 and its dependencies, of depthkit's dependencies and of
albumentations 2.0.8 that a torch 2.11 + CUDA 13 image lacks, into OUTDIR (default: wheels/
at the repository root), writes OUTDIR/SHA256SUMS and checks that every wheel's Requires-Dist
is in OUTDIR or on that image already (see PROVIDED in this script).

  --split MIB   for transports that take at most MIB MiB at a time: cut files larger than
                MIB MiB into NAME.part-aa, NAME.part-ab, ... and group all files into folders
                OUTDIR/carry-01, carry-02, ... of at most MIB MiB each (SHA256SUMS in each);
                benchmarks/gpu/check.sh joins the parts and checks the sums
  -h, --help    this text

Environment: PYTHON (default python3) runs pip.
EOF
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$REPO/wheels"
SPLIT=0
PYTHON=${PYTHON:-python3}
[[ $PYTHON != */* ]] || PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")

while [[ $# -gt 0 ]]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --split)
            [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || {
                echo "error: --split needs a size in MiB (a positive integer)" >&2; exit 2; }
            SPLIT=$2; shift 2 ;;
        -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) OUT=$1; shift ;;
    esac
done

# What the image lacks, pinned. DALI's own Requires-Dist, with nvimgcodec's [all] extra:
DALI=(
    nvidia-dali-cuda130==2.4.0
    nvidia-nvimgcodec-cu13==0.9.0.20      # nvidia-nvimgcodec-cu13[all]>=0.9,<0.10
    nvidia-nvjpeg==13.0.4.44              # [all]: nvJPEG of CUDA 13.0, like torch's cu130 build
    nvidia-nvjpeg2k-cu13==0.11.0.51       # [all]
    nvidia-nvtiff-cu13==0.8.0.82          # [all]
    nvidia-libnvcomp-cu13==5.3.0.16
    astunparse==1.6.3 gast==0.7.0 optree==0.20.0 nvtx==0.2.17 makefun==1.16.0 libcst==1.8.6
)
# depthkit's (typer pinned to the tested version, with what it needs beyond the image):
DEPTHKIT=(
    typer==0.29.2 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
    typing-inspection==0.4.5 typing-extensions==4.16.0
    webdataset==1.0.2 braceexpand==0.1.7
    py7zr==1.1.4 texttable==1.7.2 pycryptodomex==3.24.2 brotli==1.2.1 backports.zstd==1.8.0
    pyppmd==1.3.1 pybcj==1.0.8 multivolumefile==0.2.3 inflate64==1.0.4
)
# the `bench` extra (benchmarks/albu_loader.py), so the loader benchmark has its column there:
BENCH=(albumentations==2.0.8 albucore==0.0.24 stringzilla==5.3.2 simsimd==6.5.16)
# on the image already (torch 2.11 + cu130 with torchvision, TensorBoard, opencv, scipy, ...):
PROVIDED="torch numpy packaging pillow tensorboard opencv-python-headless scipy pyyaml six
wheel rich markdown-it-py mdurl pygments shellingham annotated-doc psutil pytest"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -rf "$OUT"/*.whl "$OUT"/*.part-* "$OUT"/carry-* "$OUT/SHA256SUMS"  # exactly this list
echo "downloading ${#DALI[@]} + ${#DEPTHKIT[@]} + ${#BENCH[@]} wheels into $OUT"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    -d "$OUT" "${DALI[@]}" "${DEPTHKIT[@]}" "${BENCH[@]}"

# Every Requires-Dist (markers evaluated for CPython 3.12 on Linux x86_64, nvimgcodec's [all])
# must be a wheel here or on the image already.
"$PYTHON" - "$OUT" "$PROVIDED" <<'EOF'
import pathlib, re, sys, zipfile
from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name

out, provided = pathlib.Path(sys.argv[1]), set(sys.argv[2].split())
env = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
       "platform_python_implementation": "CPython", "implementation_name": "cpython"}
wheels = sorted(out.glob("*.whl"))
have = {canonicalize_name(w.name.split("-")[0]) for w in wheels} | set(provided)
missing = []
for w in wheels:
    with zipfile.ZipFile(w) as z:
        meta = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        lines = z.read(meta).decode().splitlines()
    extras = ["all"] if w.name.startswith("nvidia_nvimgcodec") else [""]
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        wanted = req.marker is None or any(req.marker.evaluate({**env, "extra": e})
                                           for e in extras)
        if wanted and canonicalize_name(req.name) not in have:
            missing.append(f"{w.name} needs {req}")
if missing:
    sys.exit("error: wheels missing from " + str(out) + ":\n  " + "\n  ".join(missing))
print(f"dependencies: every Requires-Dist of {len(wheels)} wheels is here or on the image")
EOF

cd "$OUT"
sha256sum ./*.whl | sed 's# \./# #' > SHA256SUMS
echo "$(ls ./*.whl | wc -l) wheels, $(du -ch ./*.whl | tail -n 1 | cut -f1) in $OUT"
[[ $SPLIT -gt 0 ]] || exit 0
for f in ./*.whl; do
    if [[ $(stat -c %s "$f") -gt $((SPLIT * 1024 * 1024)) ]]; then
        split -b "${SPLIT}M" -a 2 "$f" "$f.part-"
        rm "$f"
        echo "split ${f#./} into $(ls "$f".part-* | wc -l) parts"
    fi
done
# Largest first, each into the first folder with room for it.
"$PYTHON" - "$SPLIT" <<'EOF'
import pathlib, shutil, sys
limit = int(sys.argv[1]) * 2**20 - pathlib.Path("SHA256SUMS").stat().st_size
files = sorted((p for p in pathlib.Path(".").iterdir() if p.name != "SHA256SUMS"),
               key=lambda p: -p.stat().st_size)
folders: list[list] = []  # [bytes, paths]
for f in files:
    size = f.stat().st_size
    room = next((b for b in folders if b[0] + size <= limit), None)
    if room is None:
        room = [0, []]
        folders.append(room)
    room[0] += size
    room[1].append(f)
for i, (size, paths) in enumerate(folders, 1):
    d = pathlib.Path(f"carry-{i:02d}")
    d.mkdir()
    for p in paths:
        p.rename(d / p.name)
    shutil.copy("SHA256SUMS", d)
    print(f"{d}: {len(paths)} files, {size / 2**20:.1f} MiB")
EOF
