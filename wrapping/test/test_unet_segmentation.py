"""Python tests of the wrapped module: the filters from Python equal the C++ results and numpy references."""
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

import itk

MODELS = os.environ["UNET_TEST_MODEL_DIR"]
ISBI = os.environ["UNET_ISBI_DIR"]


def model(name):
    return os.path.join(MODELS, name + ".pt")


def random_cells(shape, cells, seed, radius):
    """Balls painted over one another (so that many touch), labelled 1..cells, as uint8."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint8)
    grid = np.indices(shape).astype(np.float64)
    for k in range(cells):
        centre = rng.uniform(0, shape).reshape((-1,) + (1,) * len(shape))
        r = rng.uniform(1.0, radius)
        labels[((grid - centre) ** 2).sum(axis=0) <= r * r] = k + 1
    return labels


def brute_force_weights(labels, w0=10.0, sigma=5.0, ignore=None, class_weight_sigma=0.0, class_weights=None):
    """The documented weight map, with distances from every voxel to every cell voxel. ignore: the label of
    unannotated voxels; class_weights: (background, foreground) instead of balanced class weights."""
    points = np.indices(labels.shape).reshape(labels.ndim, -1).T.astype(np.float64)
    flat = labels.ravel()
    ignored = flat == ignore if ignore is not None else np.zeros(flat.shape, dtype=bool)
    cell = (flat != 0) & ~ignored
    background = (flat == 0) & ~ignored
    distances = []
    for label in np.unique(flat[cell]):
        members = points[flat == label]
        d = np.sqrt(((points[:, None, :] - members[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
        distances.append(d)
    n, n_cell = np.count_nonzero(~ignored), np.count_nonzero(cell)
    if class_weights is None:
        classes = (n_cell > 0) + (n_cell < n)
        class_weights = (n / (classes * max(n - n_cell, 1)), n / (classes * max(n_cell, 1)))
    w_b, w_f = class_weights
    weights = np.where(cell, w_f, w_b)
    d = np.sort(np.stack(distances), axis=0) if distances else None
    if class_weight_sigma > 0 and distances:
        weights = weights + np.where(background, (w_f - w_b) * np.exp(-d[0] ** 2 / (2 * class_weight_sigma ** 2)), 0.0)
    if len(distances) >= 2:
        weights = weights + np.where(background, w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma ** 2)), 0.0)
    weights[ignored] = 0.0
    return weights.reshape(labels.shape)


class SegmentationFromPython(unittest.TestCase):
    def setUp(self):
        self.slice = itk.imread(os.path.join(ISBI, "image", "3.png"), itk.UC)

    def test_new_with_keywords(self):
        segmenter = itk.UNetSegmentationImageFilter.New(self.slice, ModelFileName=model("unet2d_valid"))
        segmenter.SetNormalizationShiftScale(-128.0, 1.0 / 64.0)
        segmenter.Update()
        labels = itk.array_from_image(segmenter.GetOutput())
        self.assertEqual(labels.shape, (512, 512))
        self.assertEqual(set(np.unique(labels)) <= {0, 1}, True)
        probabilities = itk.array_from_image(segmenter.GetProbabilityOutput())
        self.assertEqual(probabilities.shape, (512, 512, 2))
        np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(labels, probabilities.argmax(axis=-1))
        self.assertEqual(segmenter.GetModel().GetBorder(0), 20)

    @unittest.skipUnless(os.environ.get("UNET_CLI"), "the command-line module is not built")
    def test_equals_command_line_module(self):
        """The command-line module (streamed in 4 pieces) and Python give the same label map."""
        with tempfile.TemporaryDirectory() as directory:
            output = os.path.join(directory, "labels.png")
            subprocess.run([os.environ["UNET_CLI"], "--model", model("unet2d_valid"), "--streamPieces", "4",
                            os.path.join(ISBI, "image", "3.png"), output], check=True, stdout=subprocess.DEVNULL)
            cli = itk.array_from_image(itk.imread(output, itk.UC))
        labels = itk.u_net_segmentation_image_filter(self.slice, model_file_name=model("unet2d_valid"))
        np.testing.assert_array_equal(cli, itk.array_from_image(labels))

    def test_snake_case_and_numpy_round_trip(self):
        array = np.random.default_rng(0).normal(size=(23, 31)).astype(np.float32)
        image = itk.image_from_array(array)
        image.SetSpacing([0.5, 2.0])
        image.SetOrigin([4.0, -3.0])
        labels = itk.u_net_segmentation_image_filter(image, model_file_name=model("mean2d"), tile_size=[5, 7])
        self.assertEqual(tuple(labels.GetSpacing()), (0.5, 2.0))
        self.assertEqual(tuple(labels.GetOrigin()), (4.0, -3.0))
        # mean2d: class 1 where the mirrored 3x3 mean is positive.
        padded = np.pad(array.astype(np.float64), 1, mode="symmetric")
        mean = sum(padded[dy:dy + 23, dx:dx + 31] for dy in range(3) for dx in range(3)) / 9.0
        np.testing.assert_array_equal(itk.array_from_image(labels), (mean > 0).astype(np.uint8))

    def test_progress_observer(self):
        progress = []
        segmenter = itk.UNetSegmentationImageFilter.New(self.slice, ModelFileName=model("mean2d"))
        segmenter.SetTileSize([100, 100])
        segmenter.SetTilesPerBatch(1)
        segmenter.AddObserver(itk.ProgressEvent(), lambda: progress.append(segmenter.GetProgress()))
        segmenter.Update()
        self.assertGreaterEqual(len(progress), 36)
        self.assertEqual(progress, sorted(progress))
        self.assertAlmostEqual(progress[-1], 1.0)

    def test_bad_input_raises(self):
        segmenter = itk.UNetSegmentationImageFilter.New(self.slice, ModelFileName=model("does_not_exist"))
        with self.assertRaises(RuntimeError) as raised:
            segmenter.Update()
        self.assertIn("does not exist", str(raised.exception))
        segmenter = itk.UNetSegmentationImageFilter.New(self.slice, ModelFileName=model("classifier2d"))
        with self.assertRaises(RuntimeError) as raised:
            segmenter.Update()
        self.assertIn("takes 3 channel(s)", str(raised.exception))
        array = np.zeros((20, 20), dtype=np.float32)
        array[4, 5] = np.nan
        with self.assertRaises(RuntimeError) as raised:
            itk.u_net_segmentation_image_filter(itk.image_from_array(array), model_file_name=model("mean2d"))
        self.assertIn("non-finite", str(raised.exception))
        segmenter = itk.UNetSegmentationImageFilter.New(self.slice, ModelFileName=model("mean2d"))
        segmenter.SetPrecision(itk.UNetSegmentationImageFilterEnums.Precision_BFloat16)
        self.assertEqual(segmenter.GetPrecision(), itk.UNetSegmentationImageFilterEnums.Precision_BFloat16)
        with self.assertRaises(RuntimeError) as raised:
            segmenter.Update()
        self.assertIn("Precision BFloat16 runs on a CUDA device only", str(raised.exception))

    def test_labels_only_flip_averaging_and_freezing(self):
        """The switches of the C++ filter, by their ITK names: labels without probabilities, flip averaging,
        freezing off."""
        array = np.round(np.random.default_rng(1).uniform(-4, 4, size=(21, 26))).astype(np.float32)
        image = itk.image_from_array(array)
        plain = itk.UNetSegmentationImageFilter.New(image, ModelFileName=model("sum2d"), TileSize=[6, 5])
        plain.Update()
        labels_only = itk.UNetSegmentationImageFilter.New(image, ModelFileName=model("sum2d"), TileSize=[6, 5],
                                                          GenerateProbabilities=False, FreezeModel=False,
                                                          TestTimeFlipAxes=[True, True])
        labels_only.Update()
        self.assertIsNone(labels_only.GetProbabilityOutput())
        self.assertFalse(labels_only.GetModel().IsFrozen())
        self.assertTrue(plain.GetModel().IsFrozen())
        # sum2d is symmetric and exact on integers: flipping changes nothing.
        np.testing.assert_array_equal(itk.array_from_image(plain.GetOutput()),
                                      itk.array_from_image(labels_only.GetOutput()))
        self.assertGreater(labels_only.GetEstimatedWorkingMemory(), 0.0)

    def test_callers_torch_thread_count_kept(self):
        """The filter runs LibTorch on the caller's thread with its own thread count (and splits a batch between
        threads), then gives the caller's count back: a script's torch.set_num_threads still holds afterwards."""
        import torch

        before = torch.get_num_threads()
        try:
            for callers in (1, 3):
                torch.set_num_threads(callers)
                itk.u_net_segmentation_image_filter(self.slice, model_file_name=model("unet2d_valid"),
                                                    number_of_torch_threads=2, tiles_per_batch=4)
                self.assertEqual(torch.get_num_threads(), callers)
        finally:
            torch.set_num_threads(before)

    def test_a_segmentation_prints_nothing_on_stderr(self):
        """Loading ITK's Python modules and segmenting say nothing unless something is wrong."""
        code = ("import itk, numpy as np\n"
                "image = itk.image_from_array(np.zeros((40, 50), np.float32))\n"
                f"segmenter = itk.UNetSegmentationImageFilter.New(image, ModelFileName={model('unet2d_valid')!r})\n"
                "segmenter.Update()\n"
                "assert itk.array_from_image(segmenter.GetOutput()).shape == (40, 50)\n")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertEqual(run.stderr, "")

    def test_model_geometry(self):
        unet = itk.UNetModel.New()
        unet.SetFileName(model("unet2d_paper"))
        unet.SetImageDimension(2)
        unet.Load()
        for axis in (0, 1):
            self.assertEqual((unet.GetBorder(axis), unet.GetDownsamplingFactor(axis), unet.GetMinimumInputSize(axis)),
                             (92, 16, 188))
            self.assertTrue(unet.IsValidOutputSize(axis, 388))


class TrainingCompanionsFromPython(unittest.TestCase):
    def test_weight_map_equals_numpy_brute_force(self):
        labels = random_cells((40, 33), 20, 1, 6.0)
        weights = itk.u_net_weight_map_image_filter(itk.image_from_array(labels))
        np.testing.assert_allclose(itk.array_from_image(weights), brute_force_weights(labels), rtol=1e-6, atol=2e-6)

    def test_weight_map_3d(self):
        labels = random_cells((9, 12, 10), 10, 2, 4.0)
        weights = itk.UNetWeightMapImageFilter.New(itk.image_from_array(labels), W0=5.0, Sigma=3.0)
        weights.Update()
        np.testing.assert_allclose(itk.array_from_image(weights.GetOutput()),
                                   brute_force_weights(labels, 5.0, 3.0), rtol=1e-6, atol=2e-6)

    def test_falk_et_al_options(self):
        """Falk et al.'s weights (lambda 50, sigma 6, foreground/background ratio 0.1, sigma1 10) on a partially
        annotated image (255: unannotated), and the training target of the same labels."""
        labels = random_cells((36, 30), 15, 4, 6.0)
        labels[10:20, 8:18] = 255
        image = itk.image_from_array(labels)
        weights = itk.u_net_weight_map_image_filter(image, w0=50.0, sigma=6.0, balance_classes=False,
                                                    background_weight=0.1, class_weight_sigma=10.0, ignore_label=255)
        expected = brute_force_weights(labels, 50.0, 6.0, ignore=255, class_weight_sigma=10.0,
                                       class_weights=(0.1, 1.0))
        np.testing.assert_allclose(itk.array_from_image(weights), expected, rtol=1e-6, atol=2e-6)
        self.assertTrue((itk.array_from_image(weights)[10:20, 8:18] == 0).all())

        weight_filter = itk.UNetWeightMapImageFilter.New(image, IgnoreLabel=255, ClassWeightSigma=10.0, Gap=1.5)
        self.assertEqual((weight_filter.GetIgnoreLabel(), weight_filter.GetClassWeightSigma()), (255, 10.0))
        self.assertEqual(weight_filter.GetGap(), 1.5)

        target = itk.array_from_image(itk.u_net_training_target_image_filter(image, ignore_label=255))
        self.assertTrue((target[labels == 255] == 255).all())
        self.assertTrue((target[labels == 0] == 0).all())

    def test_bad_parameters_raise(self):
        labels = itk.image_from_array(random_cells((10, 10), 3, 3, 3.0))
        with self.assertRaises(RuntimeError) as raised:
            itk.u_net_weight_map_image_filter(labels, sigma=0.0)
        self.assertIn("Sigma must be positive", str(raised.exception))

    def test_cell_labels_from_a_binary_mask(self):
        mask = itk.imread(os.path.join(ISBI, "label", "5.png"), itk.UC)
        instances = itk.u_net_cell_label_image_filter(mask, foreground_threshold=128)
        labels = itk.array_from_image(instances)
        self.assertEqual(labels.dtype, np.uint64)
        self.assertEqual(int(labels.max()), 130)  # the slice's 130 face-connected cells
        self.assertTrue(((labels > 0) == (itk.array_from_image(mask) >= 128)).all())

    def test_training_target(self):
        labels = np.zeros((10, 20), dtype=np.uint8)
        labels[2:8, 2:10] = 1
        labels[2:8, 10:18] = 2
        target = itk.array_from_image(itk.u_net_training_target_image_filter(itk.image_from_array(labels),
                                                                             border_value=2))
        self.assertTrue((target[2:8, 9:11] == 2).all())
        self.assertTrue((target[2:8, 2:9] == 1).all())
        self.assertTrue((target[labels == 0] == 0).all())


class CellSeparationFromPython(unittest.TestCase):
    def test_equals_scikit_image_watershed(self):
        """The bundled model's probabilities for a crop of held-out slice 23, separated by the filter and by
        scikit-image's seeded watershed (seeds: face-connected p >= 0.7; flood over 1 - p with lines; p < 0.2 cleared
        afterwards, as the filter does): the same seeds, cells and lines, up to the order in which the two floods
        take voxels of equal height."""
        from skimage.measure import label
        from skimage.metrics import adapted_rand_error
        from skimage.segmentation import watershed

        image = itk.array_from_image(itk.imread(os.path.join(ISBI, "image", "23.png"), itk.F))
        crop = itk.image_from_array(np.ascontiguousarray(image[60:240, 100:300]))
        crop.SetSpacing([0.5, 0.25])
        bundled = os.path.join(os.environ["UNET_EXAMPLES_DIR"], "models", "unet_isbi2012.pt")
        segmenter = itk.UNetSegmentationImageFilter.New(crop, ModelFileName=bundled)
        segmenter.Update()
        probabilities = segmenter.GetProbabilityOutput()
        cells = itk.u_net_cell_separation_image_filter(probabilities, seed_threshold=0.7, cell_threshold=0.2)
        self.assertEqual(cells.GetSpacing(), probabilities.GetSpacing())
        self.assertEqual(cells.GetOrigin(), probabilities.GetOrigin())
        ours = itk.array_from_image(cells)
        self.assertEqual(ours.dtype, np.uint64)

        p = itk.array_from_image(probabilities)[..., 1]
        seeds = label(p >= 0.7, connectivity=1)
        reference = watershed(1.0 - p, markers=seeds, connectivity=1, watershed_line=True)
        reference[p < 0.2] = 0
        self.assertGreater(seeds.max(), 20)
        self.assertEqual(int(ours.max()), int(seeds.max()))
        self.assertTrue(((ours > 0)[seeds > 0]).all())
        self.assertTrue((ours[p < 0.2] == 0).all())
        # Both flood the same probabilities from the same seeds, so they agree; the tolerance is for voxels between
        # tied probabilities, which the two watersheds may break differently and another CPU's rounding may create.
        differing = np.count_nonzero((ours > 0) != (reference > 0))
        self.assertLessEqual(differing, 0.001 * p.size)
        error, _, _ = adapted_rand_error(reference, ours.astype(np.int64), ignore_labels=(0,))
        self.assertLess(error, 0.001)

    def test_bad_settings_raise(self):
        probabilities = itk.VectorImage[itk.F, 2].New()
        probabilities.SetRegions([8, 8])
        probabilities.SetNumberOfComponentsPerPixel(2)
        probabilities.Allocate()
        with self.assertRaises(RuntimeError) as raised:
            itk.u_net_cell_separation_image_filter(probabilities, seed_threshold=0.3, cell_threshold=0.4)
        self.assertIn("CellThreshold must be in (0, SeedThreshold = 0.3]", str(raised.exception))
        with self.assertRaises(RuntimeError) as raised:
            itk.u_net_cell_separation_image_filter(probabilities, cell_class=5)
        self.assertIn("CellClass 5 is not a class of the input", str(raised.exception))


class ResamplingFromPython(unittest.TestCase):
    def test_segmented_at_the_cards_spacing_on_the_inputs_grid(self):
        """itk.UNetResamplingSegmentationImageFilter: a ball imaged at 0.5 x 0.5 x 2 mm, segmented at the card's 1 mm
        (card_sphere3d: p(inside) is the intensity), comes back on the input's grid with its volume; the card's
        spacing is converted to an input spacing in micrometres."""
        spacing = np.array([0.5, 0.5, 2.0])  # x, y, z
        shape = tuple(int(round(32.0 / s)) for s in spacing[::-1])  # z, y, x
        centre = (np.array(shape) - 1) / 2.0 * spacing[::-1]
        grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing[::-1])], indexing="ij"), -1)
        radius = np.linalg.norm(grid - centre, axis=-1)
        volume = np.clip(0.5 + (10.0 - radius) / 2.0, 0.0, 1.0).astype(np.float32)
        image = itk.image_from_array(volume)
        image.SetSpacing(spacing.tolist())
        image.SetOrigin([-5.0, 7.0, 2.5])
        resampling = itk.UNetResamplingSegmentationImageFilter[itk.Image[itk.F, 3], itk.Image[itk.UC, 3]].New(image)
        resampling.GetSegmenter().SetModelFileName(model("card_sphere3d"))
        resampling.Update()
        self.assertTrue(resampling.GetResampled())
        self.assertEqual(list(resampling.GetAppliedSpacing()), [1.0, 1.0, 1.0])
        labels = resampling.GetOutput()
        self.assertEqual(list(labels.GetSpacing()), spacing.tolist())
        self.assertEqual(list(labels.GetOrigin()), [-5.0, 7.0, 2.5])
        volume_mm3 = np.count_nonzero(itk.array_view_from_image(labels)) * float(np.prod(spacing))
        self.assertAlmostEqual(volume_mm3 / (4.0 / 3.0 * np.pi * 10.0 ** 3), 1.0, delta=0.02)
        resampling.SetInputSpacingUnit("um")
        resampling.UpdateOutputInformation()
        self.assertEqual(list(resampling.GetAppliedSpacing()), [1000.0, 1000.0, 1000.0])


class ModelCardFromPython(unittest.TestCase):
    """itk_unetsegmentation.model_card writes what itk.UNetModel reads; the filters apply it."""

    RECORD = {"schema_version": 1,
              "normalization": {"kind": "standardize", "mean": 5.0, "standard_deviation": 2.0},
              "classes": [{"name": "background"}, {"name": "cell", "color": [0, 255, 0]}],
              "cell_separation": {"seed_threshold": 0.7, "cell_threshold": 0.4},
              "provenance": {"note": "a mean filter"}}

    def setUp(self):
        self.directory = tempfile.mkdtemp()
        self.file = os.path.join(self.directory, "mean2d.pt")
        with open(model("mean2d"), "rb") as source, open(self.file, "wb") as copy:
            copy.write(source.read())

    def load(self):
        unet = itk.UNetModel.New()
        unet.SetFileName(self.file)
        unet.SetImageDimension(2)
        unet.Load()
        return unet

    def test_write_read_and_what_itk_reads(self):
        from itk_unetsegmentation import model_card

        self.assertIsNone(model_card.read(self.file))
        model_card.write(self.file, self.RECORD)
        self.assertEqual(model_card.read(self.file), self.RECORD)
        unet = self.load()
        self.assertTrue(unet.HasModelCard())
        import json
        self.assertEqual(json.loads(unet.GetModelCardJSON()), self.RECORD)
        # The filters apply it: the segmentation's standardisation, the separation's thresholds.
        image = itk.image_from_array(np.random.default_rng(3).uniform(-2, 9, (30, 40)).astype(np.float32))
        carded = itk.UNetSegmentationImageFilter.New(image, ModelFileName=self.file)
        carded.Update()
        asked = itk.UNetSegmentationImageFilter.New(image, ModelFileName=model("mean2d"), StandardizeImage=True,
                                                    StandardizedMean=5.0, StandardizedStandardDeviation=2.0)
        asked.Update()
        np.testing.assert_array_equal(itk.array_from_image(carded.GetProbabilityOutput()),
                                      itk.array_from_image(asked.GetProbabilityOutput()))
        self.assertIn("from the model card", carded.GetAppliedNormalizationDescription())
        separation = itk.UNetCellSeparationImageFilter.New(carded.GetProbabilityOutput())
        separation.SetParametersFromModel(carded.GetModel())
        self.assertEqual((separation.GetSeedThreshold(), separation.GetCellThreshold()), (0.7, 0.4))
        model_card.remove(self.file)
        self.assertIsNone(model_card.read(self.file))

    def test_bad_records_leave_the_file_as_it_was(self):
        from itk_unetsegmentation import model_card

        with open(self.file, "rb") as original:
            before = original.read()
        with self.assertRaisesRegex(ValueError, "model card field spacing.unit"):
            model_card.write(self.file, {"schema_version": 1, "spacing": {"values": [1, 1], "unit": "inch"}})
        with self.assertRaisesRegex(ValueError, "field \"classes\" names 3 classes, but the network has 2"):
            model_card.write(self.file, {"schema_version": 1, "classes": [{"name": "a"}, {"name": "b"}, {"name": "c"}]})
        with open(self.file, "rb") as after:
            self.assertEqual(after.read(), before)

    def test_command_line(self):
        run = subprocess.run([sys.executable, "-m", "itk_unetsegmentation.model_card", "set", self.file,
                              "--standardize", "5", "2", "--classes", "background", "cell:0,255,0",
                              "--spacing", "0.5", "0.5", "--unit", "um"], capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        shown = subprocess.run([sys.executable, "-m", "itk_unetsegmentation.model_card", "show", self.file],
                               capture_output=True, text=True, check=True).stdout
        self.assertIn('"unit": "um"', shown)
        self.assertEqual(self.load().GetTrainedSpacing(), (0.5, 0.5))
        run = subprocess.run([sys.executable, "-m", "itk_unetsegmentation.model_card", "set", self.file,
                              "--flip-axes", "4"], capture_output=True, text=True)
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("model card field flip_axes.0", run.stderr)

    def test_bundled_models_carry_valid_records(self):
        from itk_unetsegmentation import model_card

        examples = os.environ["UNET_EXAMPLES_DIR"]
        for name in ("unet_isbi2012.pt", "unet_isbi2012_flips_x.pt"):
            record = model_card.read(os.path.join(examples, "models", name))
            self.assertIsNotNone(record, name)
            model_card.validate(record)
            self.assertEqual(record["normalization"]["kind"], "standardize")


class Examples(unittest.TestCase):
    def test_python_examples_run(self):
        examples = os.environ["UNET_EXAMPLES_DIR"]
        with tempfile.TemporaryDirectory() as directory:
            subprocess.run([sys.executable, os.path.join(examples, "segment_image.py"), model("unet2d_valid"),
                            os.path.join(ISBI, "image", "5.png"), os.path.join(directory, "labels.png")], check=True)
            subprocess.run([sys.executable, os.path.join(examples, "compute_weight_maps.py"),
                            os.path.join(ISBI, "label", "5.png"), os.path.join(directory, "weights.nrrd"),
                            os.path.join(directory, "target.png")], check=True)
            self.assertTrue(os.path.exists(os.path.join(directory, "weights.nrrd")))
            self.assertTrue(os.path.exists(os.path.join(directory, "target.png")))


if __name__ == "__main__":
    unittest.main()
