"""Segments a volume of any size block by block on dask.distributed and writes a zarr label array.

    segment_volume_dask.py MODEL INPUT OUTPUT.zarr --tile X Y Z [--chunks Z Y X] [--workers N | --scheduler ADDRESS]

INPUT: a zarr array (``volume.zarr`` or ``volume.zarr/component``) or an image file ITK reads (MetaImage streams
block by block). OUTPUT.zarr gets the arrays ``labels`` (and ``probabilities`` with --probabilities), with the
input's origin, spacing and direction as attributes. Without --scheduler a LocalCluster of --workers processes runs
here; with it, the same code runs on the cluster whose scheduler is at ADDRESS (dask-jobqueue, SSH, Kubernetes...).
"""
import argparse
import os

from distributed import Client, LocalCluster

from itk_unetsegmentation import dask as unet_dask


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--tile", type=int, nargs="+", required=True, help="tile edges, x y z (ITK order)")
    parser.add_argument("--chunks", type=int, nargs="+", help="block edges, z y x (default: the input's chunks)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the LocalCluster")
    parser.add_argument("--torch-threads", type=int, default=1, help="LibTorch threads per worker")
    parser.add_argument("--memory-budget", type=float, default=1024.0, help="MB per forward pass")
    parser.add_argument("--scheduler", help="address of a running dask scheduler instead of a LocalCluster")
    parser.add_argument("--probabilities", action="store_true", help="write the class probabilities too")
    arguments = parser.parse_args()

    if arguments.scheduler:
        client = Client(arguments.scheduler)
    else:
        client = Client(LocalCluster(n_workers=arguments.workers, threads_per_worker=1, processes=True))

    if ".zarr" in arguments.input:
        store, _, component = arguments.input.partition(".zarr")
        volume, metadata = unet_dask.read_zarr(store + ".zarr", component.strip("/") or None)
        if arguments.chunks:
            volume = volume.rechunk(tuple(arguments.chunks))
    else:
        volume, metadata = unet_dask.read_image(arguments.input, chunks=arguments.chunks and tuple(arguments.chunks))

    result = unet_dask.segment(volume, arguments.model, tuple(arguments.tile), probabilities=arguments.probabilities,
                               number_of_torch_threads=arguments.torch_threads,
                               memory_budget=arguments.memory_budget)
    labels, probabilities = result if arguments.probabilities else (result, None)
    unet_dask.write_zarr(arguments.output, labels, probabilities, metadata)
    print(f"{os.path.abspath(arguments.output)}: labels {labels.shape}, blocks {labels.chunksize}, "
          f"{labels.npartitions} blocks on {len(client.scheduler_info()['workers'])} workers")
    client.close()


if __name__ == "__main__":
    main()
