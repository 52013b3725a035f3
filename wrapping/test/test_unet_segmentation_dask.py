"""Block-wise segmentation on dask (itk_unetsegmentation.dask) equals one pass of the filter over the whole volume,
bit for bit: on a LocalCluster of two worker processes, from zarr and from a MetaImage read block by block, with
misaligned chunks, with a worker killed mid-run; and a bad model fails with the filter's message, not a hang."""
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import warnings
from unittest import mock

import dask
import dask.array as da
import numpy as np
import zarr
from distributed import Client, Event, LocalCluster

import itk
from itk_unetsegmentation import dask as unet_dask

MODELS = os.environ["UNET_TEST_MODEL_DIR"]
MODEL = os.path.join(MODELS, "unet3d_tiny.pt")  # a valid 3-D U-Net: border 8, tile edges 2, 4, 6, ...
SHAPE = (96, 160, 160)  # z, y, x
TILE = (64, 32, 32)  # x, y, z: ITK's order, as the filter's TileSize
CHUNKS = (32, 64, 64)  # z, y, x: two tiles a block
SMALL_SHAPE = (48, 80, 80)  # for the cases that need not be large
TIMEOUT = 300  # seconds a computation may take before the test fails rather than hangs


def whole_volume_pass(volume, model=MODEL, tile_size=TILE, **settings):
    """One pass of the filter over the whole volume in this process, with two torch threads and one tile per
    forward pass: (labels, probabilities)."""
    segmenter = itk.UNetSegmentationImageFilter.New(itk.image_from_array(volume), ModelFileName=model,
                                                    TilesPerBatch=1, NumberOfTorchThreads=2, **settings)
    segmenter.SetTileSize(tile_size)
    segmenter.Update()
    return (itk.array_from_image(segmenter.GetOutput()), itk.array_from_image(segmenter.GetProbabilityOutput()))


def random_volume(shape, seed):
    return np.random.default_rng(seed).uniform(-2.0, 2.0, shape).astype(np.float32)


class BlockwiseOnLocalCluster(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.mkdtemp()
        cls.volume = random_volume(SHAPE, 7)
        cls.labels, cls.probabilities = whole_volume_pass(cls.volume)
        cls.small_volume = random_volume(SMALL_SHAPE, 8)
        cls.small_labels = whole_volume_pass(cls.small_volume)[0]
        cls.cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=logging.CRITICAL)
        cls.client = Client(cls.cluster)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.cluster.close()
        shutil.rmtree(cls.directory)

    def path(self, name):
        return os.path.join(self.directory, name)

    def compute(self, delayed):
        return self.client.compute(delayed).result(timeout=TIMEOUT)

    def test_reference_is_not_trivial(self):
        self.assertEqual(set(np.unique(self.labels)), {0, 1})
        self.assertGreater(np.count_nonzero(self.labels), self.labels.size // 10)

    def test_zarr_to_zarr_equals_whole_volume_pass(self):
        metadata = {"origin": [1.5, -2.0, 30.0], "spacing": [0.25, 0.25, 1.0],
                    "direction": [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]}
        source = zarr.open(self.path("input.zarr"), mode="w", shape=SHAPE, chunks=CHUNKS, dtype=np.float32)
        source[:] = self.volume
        source.attrs.update(metadata)
        volume, read_metadata = unet_dask.read_zarr(self.path("input.zarr"))
        self.assertEqual(read_metadata, metadata)
        with warnings.catch_warnings():
            warnings.simplefilter("error", unet_dask.ChunkAlignmentWarning)
            labels, probabilities = unet_dask.segment(volume, MODEL, TILE, probabilities=True)
        self.assertEqual(labels.chunks, volume.chunks)
        self.compute(unet_dask.write_zarr(self.path("output.zarr"), labels, probabilities, read_metadata,
                                          compute=False))
        output = zarr.open_group(self.path("output.zarr"), mode="r")
        np.testing.assert_array_equal(output["labels"][:], self.labels)
        np.testing.assert_array_equal(output["probabilities"][:], self.probabilities)
        self.assertEqual(dict(output["labels"].attrs), metadata)
        self.assertEqual(dict(output["probabilities"].attrs), metadata)
        self.assertEqual(output["labels"].chunks, CHUNKS)

    def test_metaimage_read_block_by_block_equals_whole_volume_pass(self):
        image = itk.image_from_array(self.small_volume)
        image.SetSpacing([0.5, 0.5, 2.0])
        image.SetOrigin([10.0, 20.0, -5.0])
        itk.imwrite(image, self.path("volume.mha"))
        volume, metadata = unet_dask.read_image(self.path("volume.mha"), chunks=CHUNKS)
        self.assertEqual(metadata["spacing"], [0.5, 0.5, 2.0])
        self.assertEqual(metadata["origin"], [10.0, 20.0, -5.0])
        self.assertEqual(metadata["direction"], np.eye(3).tolist())
        labels = unet_dask.segment(volume, MODEL, TILE)
        np.testing.assert_array_equal(self.compute(labels), self.small_labels)

    def test_example_script_equals_whole_volume_pass(self):
        image = itk.image_from_array(self.small_volume)
        image.SetSpacing([0.5, 0.5, 2.0])
        itk.imwrite(image, self.path("example.mha"))
        subprocess.run([sys.executable, os.path.join(os.environ["UNET_EXAMPLES_DIR"], "segment_volume_dask.py"),
                        MODEL, self.path("example.mha"), self.path("example.zarr"), "--tile", *map(str, TILE),
                        "--chunks", *map(str, CHUNKS), "--workers", "1"], check=True, timeout=TIMEOUT)
        labels = zarr.open_group(self.path("example.zarr"), mode="r")["labels"]
        np.testing.assert_array_equal(labels[:], self.small_labels)
        self.assertEqual(labels.attrs["spacing"], [0.5, 0.5, 2.0])

    def test_misaligned_chunks_are_rechunked_with_a_warning(self):
        # Strides (z, y, x) = (32, 32, 64): 45, 50 and 70 become 32, 64 and 64; along x the last chunk (16 voxels)
        # would read its mirrored context from 40 voxels back, and joins its neighbour.
        volume = da.from_array(self.small_volume, chunks=(45, 50, 70))
        with self.assertWarns(unet_dask.ChunkAlignmentWarning) as warned:
            labels = unet_dask.segment(volume, MODEL, TILE)
        self.assertIn("not all multiples of the tile stride", str(warned.warning))
        self.assertIn("axis 2: the last chunk (16 voxels) needs 40 voxels of context", str(warned.warning))
        self.assertEqual(labels.chunks, ((32, 16), (64, 16), (80,)))
        np.testing.assert_array_equal(self.compute(labels), self.small_labels)

    def test_misaligned_chunks_are_rejected_when_asked(self):
        volume = da.from_array(self.small_volume, chunks=(45, 50, 70))
        with self.assertRaises(ValueError) as raised:
            unet_dask.segment(volume, MODEL, TILE, misaligned_chunks="raise")
        self.assertIn("Aligned chunks: ((32, 16), (64, 16), (80,))", str(raised.exception))

    def test_worker_killed_mid_run_still_gives_the_exact_result(self):
        # Deterministic: every block but the first waits at a gate after it is segmented, so the run cannot end before
        # the kill; the kill takes a worker holding a block (its segmentation lost with it), then the gate opens.
        gate = Event(f"gate-{os.getpid()}-{time.time()}", client=self.client)
        name = gate.name

        def wait_at_gate(block, block_info=None):
            if any(location[0] != 0 for location in block_info[0]["array-location"]):
                Event(name).wait(TIMEOUT)
            return block

        volume = da.from_array(self.volume, chunks=CHUNKS)
        labels = unet_dask.segment(volume, MODEL, TILE).map_blocks(wait_at_gate, dtype=np.uint8)
        output = self.path("killed.zarr")
        future = self.client.compute(unet_dask.write_zarr(output, labels, compute=False))
        deadline = time.time() + TIMEOUT
        while not (self.written_blocks(output) >= 1 and any(self.client.processing().values())):
            self.assertLess(time.time(), deadline, "the first block was not written")
            time.sleep(0.05)
        processing = self.client.processing()
        victim = max(processing, key=lambda worker: len(processing[worker]))
        pid = self.client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        self.assertFalse(future.done())
        gate.set()
        future.result(timeout=TIMEOUT)
        np.testing.assert_array_equal(zarr.open_group(output, mode="r")["labels"][:], self.labels)
        self.assertNotIn(pid, self.client.run(os.getpid).values())

    def written_blocks(self, output):
        labels = os.path.join(output, "labels")
        return len([name for name in os.listdir(labels) if name[0] != "."]) if os.path.isdir(labels) else 0

    def test_model_file_rewritten_between_runs_is_loaded_again_by_the_workers(self):
        # Retraining in place on a long-lived cluster: the workers' cached filters load the new network (the same
        # geometry, other weights, maybe the same size: the modification time tells).
        volume = da.from_array(self.small_volume, chunks=CHUNKS)
        model = self.path("retrained.pt")
        start = time.time_ns()
        for run, network in enumerate(("mean3d", "sum3d", "mean3d")):
            shutil.copy(os.path.join(MODELS, network + ".pt"), model)
            stamp = start + run * 10**9
            os.utime(model, ns=(stamp, stamp))  # a second apart, whatever the file system's clock tick
            expected = whole_volume_pass(self.small_volume, model=os.path.join(MODELS, network + ".pt"),
                                         tile_size=(16, 16, 16))[1]
            labels, probabilities = unet_dask.segment(volume, model, (16, 16, 16), probabilities=True)
            np.testing.assert_allclose(self.compute(probabilities), expected, rtol=0, atol=1e-6, err_msg=network)

    def test_bad_model_fails_with_the_filters_message(self):
        volume = da.from_array(self.volume, chunks=CHUNKS)
        with self.assertRaises(RuntimeError) as raised:
            unet_dask.segment(volume, os.path.join(MODELS, "corrupt.pt"), TILE)
        self.assertIn("Cannot load a TorchScript model", str(raised.exception))
        with self.assertRaises(RuntimeError) as raised:
            unet_dask.segment(volume, MODEL, (33, 32, 32))
        self.assertIn("TileSize[0] = 33 is not valid", str(raised.exception))
        # A model that goes bad after the graph is built fails on the workers, and the error reaches the client.
        model = self.path("goes_bad.pt")
        shutil.copy(MODEL, model)
        labels = unet_dask.segment(volume, model, TILE)
        shutil.copy(os.path.join(MODELS, "corrupt.pt"), model)
        with self.assertRaises(RuntimeError) as raised:
            self.compute(labels)
        self.assertIn("Cannot load a TorchScript model", str(raised.exception))


class BlockwiseInProcess(unittest.TestCase):
    """Smaller cases on dask's synchronous scheduler: the planning of chunks, 2-D, and overlapping tiles."""

    def setUp(self):
        self.scheduler = dask.config.set(scheduler="synchronous")
        self.scheduler.__enter__()

    def tearDown(self):
        self.scheduler.__exit__(None, None, None)

    def test_short_last_chunk_is_merged(self):
        # z: 16 + 16 + 4: the last tile [32, 48) reaches 12 voxels past the end and, mirrored, reads back to
        # z = 16, further than the 8 voxels of border the other chunks need: it joins its neighbour.
        volume = random_volume((36, 40, 40), 3)
        with self.assertWarns(unet_dask.ChunkAlignmentWarning) as warned:
            labels = unet_dask.segment(da.from_array(volume, chunks=(16, 40, 40)), MODEL, (20, 20, 16))
        self.assertIn("the last chunk (4 voxels)", str(warned.warning))
        self.assertEqual(labels.chunks[0], (16, 20))
        np.testing.assert_array_equal(labels.compute(), whole_volume_pass(volume, tile_size=(20, 20, 16))[0])

    def test_same_padded_network_with_overlapping_tiles_2d(self):
        image = random_volume((150, 170), 4)
        settings = dict(tile_overlap=4)
        expected_labels, expected_probabilities = whole_volume_pass(
            image, os.path.join(MODELS, "unet2d_same.pt"), (16, 16), TileOverlap=4)
        labels, probabilities = unet_dask.segment(da.from_array(image, chunks=(36, 48)),
                                                  os.path.join(MODELS, "unet2d_same.pt"), 16, probabilities=True,
                                                  **settings)
        self.assertEqual(len(set(np.unique(expected_labels))), 3)
        np.testing.assert_array_equal(probabilities.compute(), expected_probabilities)
        np.testing.assert_array_equal(labels.compute(), expected_labels)

    def test_labels_with_probabilities_are_the_filters_from_one_run_per_block(self):
        # The labels come with the probabilities out of the same filter update (its MostProbableClass), so computing
        # both segments each block once.
        image = random_volume((64, 64), 11)
        model_file = os.path.join(MODELS, "unet2d_same.pt")
        expected_labels, expected_probabilities = whole_volume_pass(image, model_file, (16, 16))
        runs = []

        def counted(grown, block_info=None, plan=None):
            runs.append(block_info[None]["chunk-location"])
            return segment_block(grown, block_info=block_info, plan=plan)

        segment_block = unet_dask._segment_block
        with warnings.catch_warnings():
            warnings.simplefilter("error", unet_dask.ChunkAlignmentWarning)
            with mock.patch.object(unet_dask, "_segment_block", counted):
                labels, probabilities = unet_dask.segment(da.from_array(image, chunks=(32, 32)), model_file, 16,
                                                          probabilities=True)
        labels, probabilities = dask.compute(labels, probabilities)
        self.assertEqual(sorted(runs), [(0, 0), (0, 1), (1, 0), (1, 1)])
        self.assertGreater(len(np.unique(expected_labels)), 1)
        np.testing.assert_array_equal(labels, expected_labels)
        np.testing.assert_array_equal(probabilities, expected_probabilities)

    def test_blocks_of_aligned_tiles_equal_one_tile_2d(self):
        # Depth 3: tile edges 4 + 8k advance by 8k on the network's pooling grid (x 20 -> 16, y 12 -> 8), so
        # neighbouring tiles overlap by 4 and each voxel is written by one of them. Chunks of 36 rows are re-chunked
        # to multiples of the stride 8 (48: at least the 44 voxels of context); the blocks equal a whole-image pass of
        # the same tiles bit for bit, and one tile over the whole image to float rounding.
        image = random_volume((150, 170), 9)
        model_file = os.path.join(MODELS, "unet2d_valid_depth3.pt")
        same_tiles = whole_volume_pass(image, model_file, (20, 12))[1]
        one_tile = whole_volume_pass(image, model_file, (172, 156))[1]
        with self.assertWarns(unet_dask.ChunkAlignmentWarning) as warned:
            labels, probabilities = unet_dask.segment(da.from_array(image, chunks=(36, 48)), model_file, (20, 12),
                                                      probabilities=True)
        self.assertIn("tile stride (8, 16)", str(warned.warning))
        self.assertEqual(labels.chunks, ((48, 48, 54), (48, 48, 74)))
        probabilities = probabilities.compute()
        np.testing.assert_array_equal(probabilities, same_tiles)
        np.testing.assert_allclose(probabilities, one_tile, rtol=0, atol=1e-5)

    def test_uint8_volume_and_normalisation(self):
        volume = np.random.default_rng(5).integers(0, 256, (20, 50, 60), dtype=np.uint8)
        expected = whole_volume_pass(volume, tile_size=(20, 20, 10), NormalizationMean=[128.0],
                                     NormalizationStandardDeviation=[64.0])[0]
        labels = unet_dask.segment(da.from_array(volume, chunks=(10, 20, 40)), MODEL, (20, 20, 10),
                                   normalization_mean=[128.0], normalization_standard_deviation=[64.0])
        np.testing.assert_array_equal(labels.compute(), expected)

    def test_memory_budget_bounds_the_tile(self):
        with self.assertRaises(ValueError) as raised:
            unet_dask.segment(da.zeros((64, 64, 64), chunks=32, dtype=np.float32), MODEL, 32, memory_budget=1.0)
        self.assertIn("more than memory_budget = 1.0 MB", str(raised.exception))
        self.assertIn("MemoryBudget", str(raised.exception))  # the filter's own message follows

    def test_nrrd_reads_whole_file_per_block_with_a_warning(self):
        volume = random_volume((10, 12, 14), 6)
        with tempfile.TemporaryDirectory() as directory:
            itk.imwrite(itk.image_from_array(volume), os.path.join(directory, "volume.nrrd"))
            with self.assertWarns(UserWarning):
                array, _ = unet_dask.read_image(os.path.join(directory, "volume.nrrd"), chunks=(5, 6, 7))
            np.testing.assert_array_equal(array.compute(), volume)


if __name__ == "__main__":
    unittest.main()
