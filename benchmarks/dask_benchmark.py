"""Benchmark (not a test) of block-wise segmentation on dask.distributed (itk_unetsegmentation.dask).

The same volume is segmented by
  - the filter in one process over the whole volume, 2 torch threads, one tile per forward pass (what the block-wise
    result equals bit for bit), with the filter's automatic batches (what one tile per pass costs), and with 1
    torch thread (what a dask worker does, less dask);
  - itk_unetsegmentation.dask on a LocalCluster of 1 and of 2 worker processes, 1 thread and 1 torch thread each,
    from a zarr volume to a zarr label array.
The runs alternate (one of each per round, the order rotating every round) so that the load other programs put on
the machine falls on all of them alike; the medians, the spread and the ratios to the one-process filter are
printed, with throughput and peak memory (resident set) per process. Cluster start-up and each worker's model
load are timed apart from the runs.

    PYTHONPATH=$ITK_DIR/Wrapping/Generators/Python \
    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4000000000:glibc.malloc.arena_max=1 \
    /usr/bin/python3 benchmarks/dask_benchmark.py [--rounds 3] [--shape 96 160 160] [--tile 64] [--chunk 64]

The network is a seeded random valid 3-D U-Net (depth 2, 8 base channels, border 20) made here with torch from
itk_unetsegmentation.networks; its speed, not its weights, matters.
"""
import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_model(path):
    import torch

    sys.path.insert(0, os.path.join(REPO, "wrapping", "Python"))
    from itk_unetsegmentation.networks import UNet

    torch.manual_seed(0)
    model = UNet(dim=3, in_channels=1, classes=2, base=8, depth=2, valid=True).eval()
    torch.jit.save(torch.jit.script(model), path)


def single_process_run(volume_path, model, tile, tiles_per_batch, threads):
    """Runs in a child process: one filter pass over the whole volume; prints its time and peak memory."""
    import itk

    volume = np.load(volume_path)
    image = itk.image_from_array(volume)
    segmenter = itk.UNetSegmentationImageFilter.New(image, ModelFileName=model, NumberOfTorchThreads=threads,
                                                    TilesPerBatch=tiles_per_batch)
    segmenter.SetTileSize([tile] * 3)
    segmenter.UpdateOutputInformation()  # loads the model, outside the timing as for the workers
    start = time.perf_counter()
    segmenter.Update()
    seconds = time.perf_counter() - start
    np.save(volume_path + f".labels{tiles_per_batch}-{threads}.npy", itk.array_from_image(segmenter.GetOutput()))
    print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


CONFIGURATIONS = ["filter, 1 process, 2 torch threads, 1 tile per pass",
                  "filter, 1 process, 2 torch threads, automatic batches",
                  "filter, 1 process, 1 torch thread, 1 tile per pass",
                  "dask, 1 worker x 1 torch thread", "dask, 2 workers x 1 torch thread"]
DASK_CONFIGURATION = {1: CONFIGURATIONS[3], 2: CONFIGURATIONS[4]}


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shape", type=int, nargs=3, default=[96, 160, 160], help="z y x")
    parser.add_argument("--tile", type=int, default=64, help="tile edge (valid for the model: 4k)")
    parser.add_argument("--chunk", type=int, default=64, help="chunk edge, a multiple of the tile edge")
    parser.add_argument("--single", nargs=5, help=argparse.SUPPRESS)
    return parser.parse_args()


def write_inputs(directory, shape, chunk_edge):
    """Writes the model, the volume as .npy (for the one-process filter) and as zarr (for dask); returns the model's
    and the .npy volume's paths and the number of voxels."""
    import zarr

    model = os.path.join(directory, "unet3d_depth2.pt")
    make_model(model)
    volume = np.random.default_rng(0).uniform(-2.0, 2.0, shape).astype(np.float32)
    volume_path = os.path.join(directory, "volume.npy")
    np.save(volume_path, volume)
    chunks = tuple(min(chunk_edge, n) for n in shape)
    zarr.save_array(os.path.join(directory, "volume.zarr"), volume, chunks=chunks)
    return model, volume_path, chunks, volume.size


def start_clusters():
    """One LocalCluster of 1 and one of 2 worker processes, 1 thread each: {workers: (cluster, client)}."""
    import dask
    from distributed import Client, LocalCluster

    # The nanny sets MALLOC_TRIM_THRESHOLD_ (65536) in every worker's environment, which would undo
    # GLIBC_TUNABLES's trim threshold there: the workers get the same malloc settings as the one-process filter.
    if "GLIBC_TUNABLES" in os.environ:
        dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": "4000000000"})
    clusters = {}
    for workers in (1, 2):
        start = time.perf_counter()
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
        client = Client(cluster, set_as_default=False)
        started = time.perf_counter() - start
        clusters[workers] = (cluster, client)
        print(f"LocalCluster of {workers} worker process(es): started in {started:.1f} s")
    return clusters


def dask_run(client, directory, model, tile, name):
    """Segments the zarr volume block-wise into a zarr label array; returns the seconds and the labels."""
    import zarr

    from itk_unetsegmentation import dask as unet_dask

    source, _ = unet_dask.read_zarr(os.path.join(directory, "volume.zarr"))
    labels = unet_dask.segment(source, model, tile, number_of_torch_threads=1)
    output = os.path.join(directory, f"labels-{name}.zarr")
    start = time.perf_counter()
    client.compute(unet_dask.write_zarr(output, labels, compute=False)).result()
    seconds = time.perf_counter() - start
    return seconds, zarr.open_group(output, mode="r")["labels"][:]


def single_run(volume_path, model, tile, tiles_per_batch, threads):
    """Runs the one-process filter in a child process (see single_process_run); returns its time and peak memory."""
    result = subprocess.run([sys.executable, os.path.abspath(__file__), "--single", volume_path, model,
                             str(tile), str(tiles_per_batch), str(threads)], check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_rounds(rounds, clusters, directory, model, volume_path, tile):
    """Runs every configuration once a round, the order rotating; returns the times and peak memory per
    configuration and the last labels of each cluster."""
    times = {name: [] for name in CONFIGURATIONS}
    peaks = {name: 0.0 for name in CONFIGURATIONS}
    last_labels = {}
    for run in range(rounds):
        shift = run % len(CONFIGURATIONS)
        order = CONFIGURATIONS[shift:] + CONFIGURATIONS[:shift]
        for name in order:
            if name.startswith("filter"):
                tiles_per_batch = 1 if "1 tile" in name else 0
                measured = single_run(volume_path, model, tile, tiles_per_batch, 1 if "1 torch thread" in name else 2)
                times[name].append(measured["seconds"])
                peaks[name] = max(peaks[name], measured["peak_mb"])
            else:
                workers = 1 if "1 worker" in name else 2
                seconds, last_labels[workers] = dask_run(clusters[workers][1], directory, model, tile,
                                                         f"{workers}-{run}")
                times[name].append(seconds)
        print(f"round {run + 1}: " + ", ".join(f"{name.split(',')[0]} {times[name][-1]:.1f} s" for name in order))
    return times, peaks, last_labels


def record_worker_peaks(clusters, peaks):
    """Sets the dask configurations' peak memory to their largest worker's."""
    for workers in (1, 2):
        _, client = clusters[workers]
        worker_peaks = client.run(peak_mb)
        peaks[DASK_CONFIGURATION[workers]] = max(worker_peaks.values())
        print(f"{workers} worker(s): peak resident memory per worker "
              + ", ".join(f"{value:.0f} MB" for value in worker_peaks.values()))


def print_table(times, peaks, voxels):
    base = statistics.median(times[CONFIGURATIONS[0]])
    print(f"\n{'configuration':58s} {'median':>8s} {'min-max':>13s} {'Mvoxel/s':>9s} {'ratio':>6s} {'peak MB':>8s}")
    for name in CONFIGURATIONS:
        median = statistics.median(times[name])
        print(f"{name:58s} {median:7.1f}s {min(times[name]):5.1f}-{max(times[name]):5.1f} s "
              f"{voxels / median / 1e6:9.3f} {base / median:6.2f} {peaks[name]:8.0f}")


def print_label_agreement(volume_path, last_labels):
    """Whether every 1-tile-per-pass run gave the same labels, and how many automatic batches change."""
    reference = np.load(volume_path + ".labels1-2.npy")
    exact = all(np.array_equal(labels, reference) for labels in last_labels.values())
    exact = exact and np.array_equal(np.load(volume_path + ".labels1-1.npy"), reference)
    automatic = np.load(volume_path + ".labels0-2.npy")
    print(f"\nlabels of every 1-tile-per-pass run (dask, 1 or 2 threads) equal bit for bit: {exact}; "
          f"voxels whose label differs with automatic batches: {np.count_nonzero(automatic != reference)}")


def close_clusters(clusters):
    for cluster, client in clusters.values():
        client.close()
        try:
            cluster.close(timeout=60)
        except Exception as error:  # a busy machine can be slow to stop worker processes: not the benchmark's
            print(f"closing a LocalCluster: {error!r}")


def main():
    arguments = parse_arguments()
    if arguments.single:
        volume_path, model, tile, tiles_per_batch, threads = arguments.single
        single_process_run(volume_path, model, int(tile), int(tiles_per_batch), int(threads))
        return

    directory = tempfile.mkdtemp(prefix="unet-dask-benchmark-")
    shape = tuple(arguments.shape)
    model, volume_path, chunks, voxels = write_inputs(directory, shape, arguments.chunk)
    print(f"volume {shape} (z, y, x), {voxels / 1e6:.2f} Mvoxel; chunks {chunks}; tiles {arguments.tile}^3; "
          f"{os.cpu_count()} cores; GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}")
    clusters = start_clusters()

    # Warm-up: every worker loads the model once (timed), nothing else is kept.
    for workers in (1, 2):
        seconds, _ = dask_run(clusters[workers][1], directory, model, arguments.tile, f"{workers}-warm-up")
        print(f"first run on {workers} worker(s), model loads included: {seconds:.1f} s")

    times, peaks, last_labels = run_rounds(arguments.rounds, clusters, directory, model, volume_path, arguments.tile)
    record_worker_peaks(clusters, peaks)
    print_table(times, peaks, voxels)
    print_label_agreement(volume_path, last_labels)
    print("ratio: the one-process filter's median time (1 tile per pass) over the configuration's")
    close_clusters(clusters)


if __name__ == "__main__":
    main()
