"""Benchmark (not a test): the filter with the BLAS behind libblas.so.3 that Debian's alternatives chose (OpenBLAS
once scripts/install-deps.sh ran) against Debian's reference BLAS (libblas3), in alternating pairs of processes.

Debian's LibTorch runs transposed convolutions (a U-Net's up-convolutions) and the convolutions it does not hand to
oneDNN through the system BLAS. Each process loads one BLAS (the reference one through LD_LIBRARY_PATH), warms the
filter up with one update and times the next; it reports the libraries it loaded, read from its own memory map.

    PYTHONPATH=$ITK_DIR/Wrapping/Generators/Python \
    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4000000000:glibc.malloc.arena_max=1 \
    /usr/bin/python3 benchmarks/blas_comparison.py MODEL_DIR [--pairs 5] [--threads 2] [--cases 0,1,2,3]
"""
import argparse
import os
import statistics
import subprocess
import sys

# Debian's libblas3 and liblapack3 (the reference LAPACK too: OpenBLAS's LAPACK would load OpenBLAS beside it).
REFERENCE_DIRS = ["/usr/lib/x86_64-linux-gnu/blas", "/usr/lib/x86_64-linux-gnu/lapack"]
CASES = [  # name, model, image size (x, y[, z]), tile edge (0: automatic)
    ("paper-style 2-D U-Net, 2048 x 2048, automatic tile", "unet2d_paper.pt", (2048, 2048), 0),
    ("paper-style 2-D U-Net, 2048 x 2048, 196-pixel tiles", "unet2d_paper.pt", (2048, 2048), 196),
    ("depth-2 valid 3-D U-Net, 160 x 160 x 96, automatic tile", "unet3d_valid_depth2.pt", (160, 160, 96), 0),
    ("depth-2 valid 3-D U-Net, 160 x 160 x 96, 64^3 tiles", "unet3d_valid_depth2.pt", (160, 160, 96), 64),
]


def loaded_blas():
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "libblas" in line or "libopenblas" in line}
    return " ".join(sorted(os.path.realpath(p) for p in paths)) or "none"


def time_filter(model, size, tile, threads):
    """One warm update of the filter, labels only, the CPU's default batch; prints the seconds and the BLAS loaded."""
    from tiles_per_pass import make_filter, noise_image, seconds  # imports itk: only in the child, which loads the BLAS

    array, image = noise_image(tuple(reversed(size)))
    segmenter = make_filter(image, model, tile, 0, threads)
    print("%.4f %s" % (seconds(segmenter), loaded_blas()))


def run_child(args, case, reference):
    env = dict(os.environ)
    if reference:
        env["LD_LIBRARY_PATH"] = ":".join(d for d in REFERENCE_DIRS + [env.get("LD_LIBRARY_PATH", "")] if d)
    _, model, size, tile = case
    command = [sys.executable, __file__, args.model_dir, "--child", model, ",".join(map(str, size)), str(tile),
               "--threads", str(args.threads)]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout.split()
    return float(output[0]), output[1]


def compare(args, case):
    times = {True: [], False: []}
    libraries = {}
    for pair in range(args.pairs):
        for reference in ((True, False) if pair % 2 == 0 else (False, True)):
            seconds, libraries[reference] = run_child(args, case, reference)
            times[reference].append(seconds)
    ratios = [r / o for r, o in zip(times[True], times[False])]
    print("%s\n  reference BLAS (%s): median %.2f s (%.2f-%.2f)\n  installed BLAS (%s): median %.2f s (%.2f-%.2f)\n"
          "  reference / installed per pair: median %.2f (%.2f-%.2f)" % (
              case[0], libraries[True], statistics.median(times[True]), min(times[True]), max(times[True]),
              libraries[False], statistics.median(times[False]), min(times[False]), max(times[False]),
              statistics.median(ratios), min(ratios), max(ratios)), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="the directory make_test_models.py wrote (build/test/models)")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default=",".join(str(k) for k in range(len(CASES))),
                        help="which cases, by number from 0 (default: all)")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "SIZE", "TILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, size, tile = args.child
        time_filter(os.path.join(args.model_dir, model), [int(s) for s in size.split(",")], int(tile), args.threads)
        return 0
    if not all(os.path.isdir(d) for d in REFERENCE_DIRS):
        sys.exit("Debian's reference BLAS and LAPACK (libblas3, liblapack3) are not installed: nothing to compare with.")
    print("BLAS comparison: %d alternating pairs, %d torch threads, GLIBC_TUNABLES=%s" % (
        args.pairs, args.threads, os.environ.get("GLIBC_TUNABLES", "(unset)")), flush=True)
    for k in args.cases.split(","):
        compare(args, CASES[int(k)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
