"""Tests of the training tool, itk_unetsegmentation.training, and of the scores it and the demo print
(itk_unetsegmentation.scoring): mirroring as the filter mirrors, augmentation applied alike to image and labels,
training inputs from the module's filters, a loss that goes down, and an exported network that the filter runs."""
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch

import itk


from itk_unetsegmentation import model_card
from itk_unetsegmentation import scoring as score_segmentation
from itk_unetsegmentation import training as train_unet
from itk_unetsegmentation.networks import valid_unet_border

ISBI = os.environ["UNET_ISBI_DIR"]


def isbi_crop(index, size=96):
    """A crop of an ISBI 2012 slice and its cell labels (through UNetCellLabelImageFilter)."""
    image = train_unet.read_image(os.path.join(ISBI, "image", f"{index}.png"))[:size, :size]
    cells = train_unet.read_cells(os.path.join(ISBI, "label", f"{index}.png"))[:size, :size]
    return np.ascontiguousarray(image), np.ascontiguousarray(cells)


def write_crops(directory, indices, extension, size=96, spacing=None):
    """ISBI crops as image and mask files (uint8) in `directory`, with `spacing` (x, y) in their headers if given;
    returns the image and label file names."""
    images, labels = [], []
    for index in indices:
        image, _ = isbi_crop(index, size)
        mask = itk.array_from_image(itk.imread(os.path.join(ISBI, "label", f"{index}.png"), itk.UC))[:size, :size]
        for array, names, kind in ((image, images, "image"), (mask, labels, "label")):
            written = itk.image_from_array(np.ascontiguousarray(array.astype(np.uint8)))
            if spacing is not None:
                written.SetSpacing(spacing)
            names.append(os.path.join(directory, f"{kind}{index}.{extension}"))
            itk.imwrite(written, names[-1])
    return images, labels


def read_card(model_file, test):
    """The model card of `model_file` as itk.UNetModel reads it (checked against the network at load), which is
    what itk_unetsegmentation.model_card reads from the archive."""
    unet = itk.UNetModel.New()
    unet.SetFileName(model_file)
    unet.SetImageDimension(2)
    unet.Load()
    test.assertTrue(unet.HasModelCard())
    card = json.loads(unet.GetModelCardJSON())
    test.assertEqual(card, model_card.read(model_file))
    return card


def pooled_statistics(files):
    """The mean and standard deviation of all the voxels of the images, as the training tool reads them."""
    voxels = np.concatenate([train_unet.read_image(f).ravel() for f in files]).astype(np.float64)
    return float(voxels.mean()), float(voxels.std())


class Mirroring(unittest.TestCase):
    def test_equals_numpy_symmetric_pad(self):
        """np.pad(mode="symmetric") repeats the edge voxel, as ITK's MirrorPadImageFilter (checked against the filter
        in the C++ tests); windows reaching past the image, several times past a small one, or wholly outside."""
        rng = np.random.default_rng(0)
        for shape in [(7, 5), (4, 6, 3)]:
            array = rng.integers(0, 100, size=shape)
            pad = 40
            padded = np.pad(array, pad, mode="symmetric")
            for _ in range(20):
                origin = rng.integers(-pad, 10, size=len(shape))
                size = rng.integers(1, 30, size=len(shape))
                expected = padded[tuple(slice(o + pad, o + pad + n) for o, n in zip(origin, size))]
                np.testing.assert_array_equal(train_unet.mirrored_window(array, origin, size), expected)

    def test_exported_network_in_the_filter_equals_torch_on_the_mirrored_tile(self):
        """The filter's probabilities for a one-tile image equal the network's softmax on the tool's mirrored tile:
        the filter mirrors as the tool does, and the normalisation inside the saved network is applied once."""
        image, _ = isbi_crop(5, size=100)
        depth = 2
        border = valid_unet_border(depth)
        model = train_unet.build_network(2, depth, 8, 0.5, float(image.mean()), float(image.std()))
        torch.manual_seed(3)
        train_unet.initialize_as_paper(model.net)
        with tempfile.TemporaryDirectory() as directory:
            model_file = os.path.join(directory, "model.pt")
            train_unet.export(model, model_file)
            segmenter = itk.UNetSegmentationImageFilter.New(itk.image_from_array(image))
            segmenter.SetModelFileName(model_file)
            segmenter.SetTileSize([100, 100])  # one tile: its input is the image mirrored by the border
            segmenter.Update()
            probabilities = itk.array_from_image(segmenter.GetProbabilityOutput())
            self.assertEqual(segmenter.GetModel().GetBorder(0), border)
        tile = train_unet.mirrored_window(image, (-border, -border), (100 + 2 * border,) * 2)
        model.eval()
        with torch.no_grad():
            expected = torch.softmax(model(torch.from_numpy(tile)[None, None]), 1)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(probabilities, expected, atol=2e-5)


class Augmentation(unittest.TestCase):
    def test_elastic_displacement(self):
        """Exact at the coarse grid's nodes (corner to corner), a cubic spline in between: equal to interpolating
        the coarse grid directly in N-D."""
        from scipy import ndimage
        for shape in [(61, 45), (13, 21, 17)]:
            field = train_unet.elastic_displacement(shape, 10.0, np.random.default_rng(4))
            coarse = np.random.default_rng(4).normal(0.0, 10.0, size=(len(shape),) + (3,) * len(shape))
            self.assertEqual(field.shape, (len(shape),) + shape)
            nodes = np.ix_(*[np.array([0, (n - 1) // 2, n - 1]) for n in shape])
            np.testing.assert_allclose(field[(slice(None),) + nodes], coarse, atol=1e-9)
            points = np.stack(np.meshgrid(*[np.linspace(0, 2, n) for n in shape], indexing="ij"))
            direct = np.stack([ndimage.map_coordinates(c, points, order=3, mode="mirror") for c in coarse])
            np.testing.assert_allclose(field, direct, atol=1e-9)

    def test_image_and_labels_deformed_alike(self):
        """Image = a voxel coordinate (cubic resampling reproduces it exactly), labels = the same coordinate as an
        integer (nearest neighbour): after the deformation they differ by at most half a voxel everywhere."""
        shape = (120, 110)
        for axis in range(2):
            coordinate = np.indices((400, 400))[axis]
            field = train_unet.elastic_displacement(shape, 10.0, np.random.default_rng(axis))
            image, labels = train_unet.deformed_window(coordinate.astype(np.float32), coordinate, (140, 150), shape,
                                                       field)
            self.assertGreater(np.abs(image - np.indices(shape)[axis] - np.array([140, 150])[axis]).max(), 1.0)
            self.assertLessEqual(np.abs(image - labels).max(), 0.5 + 1e-3)
        image, labels = train_unet.deformed_window(coordinate.astype(np.float32), coordinate, (-5, 390), shape, None)
        np.testing.assert_array_equal(labels, train_unet.mirrored_window(coordinate, (-5, 390), shape))

    def orientations(self, which, shape, draws=200):
        """The distinct results of flip_and_rotate(which) of one random array over `draws` calls, each checked to
        be the same for a float64 and a float32 copy."""
        rng = np.random.default_rng(1)
        array = rng.normal(size=shape)
        seen = {}
        for _ in range(draws):
            first, second = train_unet.flip_and_rotate([array, array.astype(np.float32)], rng, which)
            np.testing.assert_array_equal(first.astype(np.float32), second)
            seen[first.tobytes()] = first
        return array, list(seen.values())

    def test_flips_and_rotations_alike(self):
        self.assertEqual(len(self.orientations("all", (6, 6))[1]), 8)  # the square's symmetries
        self.assertEqual(len(self.orientations("all", (3, 5, 5))[1]), 16)  # and those x 2 along z

    def test_flips_along_x_keep_every_other_axis(self):
        """--flips x: each array as it is or mirrored along its last axis, both seen."""
        for shape in [(6, 6), (3, 5, 5)]:
            array, seen = self.orientations("x", shape)
            self.assertEqual(sorted(a.tobytes() for a in seen), sorted([array.tobytes(),
                                                                        array[..., ::-1].copy().tobytes()]))


class TrainingInputs(unittest.TestCase):
    def test_weights_of_a_sampled_tile_are_the_filters(self):
        """The weights the loss gets for a sampled tile are itk.u_net_weight_map_image_filter on that tile's cell
        labels (cropped to the output tile); its target is those cells."""
        image, cells = isbi_crop(2, size=200)
        recipe = train_unet.Recipe(tile=36, border=valid_unet_border(2))
        rng = np.random.default_rng(7)
        for _ in range(3):
            sample = train_unet.sample_tile(image, cells, recipe, rng)
            self.assertEqual(sample.image.shape, (36 + 2 * recipe.border,) * 2)
            self.assertEqual(sample.weights.shape, (36, 36))
            labels = itk.image_from_array(sample.labels.astype(np.uint64))
            weights = itk.array_from_image(itk.u_net_weight_map_image_filter(labels, w0=10.0, sigma=5.0))
            b = recipe.border
            np.testing.assert_array_equal(sample.weights, weights[b:-b, b:-b])
            np.testing.assert_array_equal(sample.target, sample.labels[b:-b, b:-b] > 0)
            # The labels are separated: the target filter finds no touching cells left in them.
            np.testing.assert_array_equal(train_unet.training_target(sample.labels), sample.labels > 0)
            self.assertGreater(weights.max(), 3.0)  # membranes between cells weigh more

    def test_instance_labels_read_as_they_are(self):
        _, cells = isbi_crop(4)
        with tempfile.TemporaryDirectory() as directory:
            file_name = os.path.join(directory, "cells.nrrd")
            itk.imwrite(itk.image_from_array(cells.astype(np.float32)), file_name)
            np.testing.assert_array_equal(train_unet.read_cells(file_name, "instances"), cells)

    def test_standardized_image_is_what_the_filter_standardises(self):
        """standardized (the training images under --standardize, whose target the model card gives the filter) maps
        an image as the segmentation filter's StandardizeImage does: a network's probabilities on the tool's
        standardised image equal the filter's on the raw image it standardises itself, and differ on the raw image
        unstandardised, so the comparison can tell."""
        image, _ = isbi_crop(3, size=24)
        mean, standard_deviation = 0.3, 1.7
        model = train_unet.build_network(2, 2, 4, 0.5, 0.0, 1.0)
        torch.manual_seed(4)
        train_unet.initialize_as_paper(model.net)
        with tempfile.TemporaryDirectory() as directory:
            model_file = os.path.join(directory, "model.pt")
            train_unet.export(model, model_file)

            def probabilities(array, **settings):
                segmenter = itk.UNetSegmentationImageFilter.New(itk.image_from_array(array), ModelFileName=model_file,
                                                                **settings)
                segmenter.Update()
                return itk.array_from_image(segmenter.GetProbabilityOutput())

            by_filter = probabilities(image, StandardizeImage=True, StandardizedMean=mean,
                                      StandardizedStandardDeviation=standard_deviation)
            by_tool = probabilities(train_unet.standardized(image, mean, standard_deviation))
            raw = probabilities(image)
        np.testing.assert_allclose(by_tool, by_filter, rtol=0, atol=1e-5)
        self.assertGreater(np.abs(raw - by_filter).max(), 1e-3)


class Training(unittest.TestCase):
    def test_loss_goes_down(self):
        """A few steps on two small crops of the shared slices lower the weighted loss on fixed tiles."""
        crops = [isbi_crop(0), isbi_crop(1)]
        settings = dict(depth=2, width=8, dropout=0.5, tile=36, elastic_sd=10.0, weights="map", w0=10.0, sigma=5.0,
                        batch=2, optimizer="adam", learning_rate=2e-3, final_learning_rate=2e-3, seed=0, steps=60)
        torch.set_num_threads(2)
        trainer = train_unet.Trainer(settings, [c[0] for c in crops], [c[1] for c in crops])
        fixed = trainer.samples(6)

        def fixed_loss():
            trainer.model.eval()
            with torch.no_grad():
                loss = trainer.loss(fixed).item()
            trainer.model.train()
            return loss

        before = fixed_loss()
        for _ in range(settings["steps"]):
            trainer.train_step()
        after = fixed_loss()
        self.assertLess(after, 0.8 * before, f"loss {before} -> {after}")


class InitialModel(unittest.TestCase):
    SETTINGS = dict(depth=2, width=4, dropout=0.5, batch_norm=True, tile=36, elastic_sd=0.0, weights="none", w0=10.0,
                    sigma=5.0, batch=1, optimizer="adam", learning_rate=1e-3, final_learning_rate=1e-3, seed=0,
                    steps=2)

    def test_fine_tuning_starts_from_the_saved_network(self):
        """--initial-model: the network, its architecture and its intensity normalisation are the file's, whatever
        the options say; the images' own statistics are not used."""
        image, cells = isbi_crop(0)
        first = train_unet.Trainer(dict(self.SETTINGS), [image], [cells])
        first.train_step()
        with tempfile.TemporaryDirectory() as directory:
            model_file = os.path.join(directory, "model.pt")
            train_unet.export(first.model, model_file)
            settings = dict(self.SETTINGS, depth=3, width=8, batch_norm=False, dropout=0.0, initial_model=model_file)
            second = train_unet.Trainer(settings, [image * 2.0 + 7.0], [cells])
        self.assertEqual((settings["depth"], settings["width"], settings["batch_norm"]), (2, 4, True))
        self.assertEqual(settings["dropout"], 0.5)
        self.assertAlmostEqual(second.model.mean, first.model.mean, places=5)
        self.assertAlmostEqual(second.model.scale, first.model.scale, places=5)
        second_state = second.model.state_dict()
        for name, value in first.model.state_dict().items():
            self.assertTrue(torch.equal(value, second_state[name]), name)
        tile = torch.from_numpy(train_unet.mirrored_window(image, (-20, -20), (36 + 2 * 20, 36 + 2 * 20))[None, None])
        first.model.eval()
        second.model.eval()
        with torch.no_grad():
            self.assertTrue(torch.equal(first.model(tile), second.model(tile)))
        loss, _ = second.train_step()
        self.assertTrue(np.isfinite(loss))

    def test_a_file_that_is_no_saved_u_net_is_refused(self):
        image, cells = isbi_crop(0)
        with tempfile.TemporaryDirectory() as directory:
            not_torchscript = os.path.join(directory, "weights.pt")
            with open(not_torchscript, "w") as file:
                file.write("not a model")
            other_network = os.path.join(directory, "conv.pt")
            torch.jit.save(torch.jit.script(torch.nn.Conv2d(1, 2, 3)), other_network)
            for file_name, message in ((not_torchscript, "not a TorchScript file"),
                                       (other_network, "not a U-Net saved by this tool"),
                                       (os.path.join(directory, "missing.pt"), "not a TorchScript file")):
                with self.assertRaisesRegex(ValueError, message):
                    train_unet.Trainer(dict(self.SETTINGS, initial_model=file_name), [image], [cells])


class DecisionCalibration(unittest.TestCase):
    def test_saved_network_decides_at_the_threshold(self):
        """export(..., t): the saved network's most probable class is the cell class exactly where the trained
        network's p(cell) > t; the trained network itself is left as it was, in training mode."""
        image, cells = isbi_crop(0)
        trainer = train_unet.Trainer(dict(InitialModel.SETTINGS), [image], [cells])
        trainer.train_step()
        before = {name: value.clone() for name, value in trainer.model.state_dict().items()}
        tile = torch.from_numpy(train_unet.mirrored_window(image, (-20, -20), (36 + 2 * 20, 36 + 2 * 20))[None, None])
        with tempfile.TemporaryDirectory() as directory:
            plain, calibrated = os.path.join(directory, "plain.pt"), os.path.join(directory, "calibrated.pt")
            train_unet.export(trainer.model, plain)
            train_unet.export(trainer.model, calibrated, 0.3)
            with torch.no_grad():
                p_cell = torch.softmax(torch.jit.load(plain)(tile), 1)[0, 1]
                decided = torch.jit.load(calibrated)(tile).argmax(1)[0]
        self.assertTrue(0 < int(((p_cell > 0.3) & (p_cell <= 0.5)).sum()), "no voxel between the thresholds")
        self.assertTrue(torch.equal(decided == 1, p_cell > 0.3))
        self.assertTrue(trainer.model.training)
        for name, value in trainer.model.state_dict().items():
            self.assertTrue(torch.equal(value, before[name]), name)

    def test_threshold_with_fewest_misclassified_voxels_over_all_images(self):
        rng = np.random.default_rng(3)
        p = [rng.random((40, 50)), rng.random((10, 10))]
        self.assertEqual(train_unet.decision_threshold(p, [np.where(q > 0.3, 5, 0) for q in p]), 0.3)
        # 0.7 misclassifies the small image's voxels between 0.65 and 0.7, 0.65 the large image's: fewer at 0.7.
        self.assertEqual(train_unet.decision_threshold(p, [p[0] > 0.7, p[1] > 0.65]), 0.7)


class CommandLine(unittest.TestCase):
    def test_trains_resumes_and_the_filter_segments_with_the_result(self):
        with tempfile.TemporaryDirectory() as directory:
            images, labels = [], []
            for index, extension in ((0, "png"), (1, "nrrd"), (20, "mha")):
                image, _ = isbi_crop(index, size=120)
                mask = itk.array_from_image(itk.imread(os.path.join(ISBI, "label", f"{index}.png"), itk.UC))
                images.append(os.path.join(directory, f"image{index}.{extension}"))
                labels.append(os.path.join(directory, f"label{index}.{extension}"))
                itk.imwrite(itk.image_from_array(image.astype(np.uint8)), images[-1])
                itk.imwrite(itk.image_from_array(np.ascontiguousarray(mask[:120, :120])), labels[-1])
            output = os.path.join(directory, "run")
            tool = [sys.executable, "-m", "itk_unetsegmentation.training", "--output", output]
            common = ["--depth", "2", "--width", "4", "--tile", "40", "--evaluate-every", "2", "--print-every", "1"]
            run = subprocess.run(tool + common + ["--images"] + images[:2] + ["--labels"] + labels[:2] +
                                 ["--held-out-images", images[2], "--held-out-labels", labels[2], "--steps", "4",
                                  "--calibrate-decision", "--seed-threshold", "0.6", "--cell-threshold", "0.3"],
                                 check=True, capture_output=True, text=True)
            self.assertIn("step 4/4", run.stdout)
            self.assertIn("adapted Rand error", run.stdout)
            self.assertIn("step 4: decision at p(cell) > ", run.stdout)
            for name in ("model.pt", "checkpoint.pt", "log.csv", "training.png"):
                self.assertTrue(os.path.exists(os.path.join(output, name)), name)
            run = subprocess.run(tool + ["--resume", "--steps", "6", "--evaluate-every", "3"], check=True,
                                 capture_output=True, text=True)
            self.assertIn("from step 4 to 6", run.stdout)
            with open(os.path.join(output, "log.csv")) as log:
                rows = list(csv.DictReader(log))
            self.assertEqual([int(r["step"]) for r in rows], [1, 2, 3, 4, 5, 6])
            self.assertEqual([int(r["step"]) for r in rows if r["rand_error"]], [2, 4, 6])
            self.assertEqual([int(r["step"]) for r in rows if r["decision_threshold"]], [2, 4, 6])  # kept on --resume

            image = itk.imread(images[2], itk.UC)
            segmenter = itk.UNetSegmentationImageFilter.New(image, ModelFileName=os.path.join(output, "model.pt"))
            segmenter.Update()
            labels_out = itk.array_from_image(segmenter.GetOutput())
            self.assertEqual(labels_out.shape, (120, 120))
            self.assertTrue(set(np.unique(labels_out)) <= {0, 1})
            # The tool scored the held-out image with the same filter and the same network.
            truth = train_unet.read_cells(labels[2])
            scores = score_segmentation.segmentation_scores(labels_out == 1, truth)
            self.assertAlmostEqual(float(rows[-1]["rand_error"]), scores["rand_error"], places=4)
            self.assertAlmostEqual(float(rows[-1]["rand_error_thinned"]), scores["rand_error_thinned"], places=4)
            # ... and the cells the separation filter makes from its probabilities, at the thresholds given.
            self.assertIn("separated cells (seeds 0.6, cells 0.3)", run.stdout)  # the first run's, kept on --resume
            cells_out = itk.u_net_cell_separation_image_filter(segmenter.GetProbabilityOutput(), seed_threshold=0.6,
                                                               cell_threshold=0.3)
            scores = score_segmentation.segmentation_scores(itk.array_from_image(cells_out) > 0, truth)
            for name in ("pixel_error", "dice", "rand_error", "rand_error_thinned"):
                self.assertAlmostEqual(float(rows[-1]["cells_" + name]), scores[name], places=4, msg=name)
            self.check_model_card(os.path.join(output, "model.pt"), images[:2], rows)

    def check_model_card(self, model_file, training_images, rows):
        """The card of the network the run above saved says what the run used: the images' spacing (none: PNG and
        NRRD written without one), the default classes and flips, the thresholds given, the recipe, the scores of
        its last log row; no card normalisation, since the network normalises inside itself, which the provenance
        records with the training images' mean and standard deviation."""
        card = read_card(model_file, self)
        self.assertNotIn("normalization", card)
        self.assertEqual(card["spacing"], {"values": [1.0, 1.0], "unit": "pixel"})
        self.assertEqual([c["name"] for c in card["classes"]], ["background", "cell"])
        self.assertEqual(card["flip_axes"], [0, 1])
        self.assertEqual(card["cell_separation"], {"cell_class": 1, "seed_threshold": 0.6, "cell_threshold": 0.3})
        provenance = card["provenance"]
        self.assertEqual(provenance["cell_separation"],
                         {"chosen": False, "seed_threshold": "given", "cell_threshold": "given"})
        self.assertEqual(provenance["training_images"], [os.path.basename(f) for f in training_images])
        recipe = provenance["recipe"]
        self.assertEqual((recipe["depth"], recipe["width"], recipe["tile"], recipe["flips"], recipe["standardize"],
                          recipe["calibrate_decision"], recipe["spacing"], recipe["spacing_unit"]),
                         (2, 4, 40, "all", False, True, [1.0, 1.0], "pixel"))
        scores = provenance["held_out_scores"]
        self.assertEqual(len(scores), 8)
        for name, value in scores.items():
            self.assertAlmostEqual(value, float(rows[-1][name]), delta=1e-5, msg=name)
        mean, standard_deviation = pooled_statistics(training_images)
        inside = provenance["input_normalization"]
        self.assertTrue(inside["inside_network"])
        self.assertAlmostEqual(inside["mean"], mean, delta=1e-4 * mean)
        self.assertAlmostEqual(inside["standard_deviation"], standard_deviation, delta=1e-4 * standard_deviation)
        network = torch.jit.load(model_file)
        self.assertAlmostEqual(float(network.mean), inside["mean"], delta=1e-4 * mean)
        self.assertAlmostEqual(1.0 / float(network.scale), inside["standard_deviation"],
                               delta=1e-4 * standard_deviation)

    def test_bad_separation_thresholds_fail_before_training(self):
        with tempfile.TemporaryDirectory() as directory:
            image = os.path.join(ISBI, "image", "0.png")
            label = os.path.join(ISBI, "label", "0.png")
            run = subprocess.run([sys.executable, "-m", "itk_unetsegmentation.training", "--output", directory,
                                  "--images", image, "--labels", label, "--held-out-images", image,
                                  "--held-out-labels", label, "--seed-threshold", "0.3", "--cell-threshold", "0.5"],
                                 capture_output=True, text=True)
            self.assertNotEqual(run.returncode, 0)
            self.assertIn("--seed-threshold 0.3, --cell-threshold 0.5", run.stderr)
            self.assertIn("CellThreshold must be in (0, SeedThreshold = 0.3]", run.stderr)
            self.assertEqual(run.stdout, "")
            self.assertEqual(os.listdir(directory), [])


class ModelCardOfATrainingRun(unittest.TestCase):
    TOOL = [sys.executable, "-m", "itk_unetsegmentation.training"]
    SMALL = ["--depth", "2", "--width", "4", "--tile", "40", "--print-every", "1"]
    # --choose-thresholds' grid, written out here rather than taken from the tool.
    GRID = [(0.5, 0.2), (0.5, 0.3), (0.5, 0.5), (0.6, 0.2), (0.6, 0.3), (0.6, 0.5), (0.7, 0.2), (0.7, 0.3), (0.7, 0.5)]

    def test_standardized_run_with_thresholds_chosen_and_the_images_spacing(self):
        """--standardize --choose-thresholds --flips x --class-names on two crops with spacing 0.5 in their headers,
        three steps: the card holds the standardisation to the training voxels' mean and standard deviation (which
        the segmentation filter applies), spacing 0.5 mm, the names and flips asked for, and the grid's best
        thresholds on the training images, scored here independently."""
        with tempfile.TemporaryDirectory() as directory:
            images, labels = write_crops(directory, (0, 1), "mha", spacing=(0.5, 0.5))
            model_file = os.path.join(directory, "run", "model.pt")
            run = subprocess.run(self.TOOL + self.SMALL + [
                "--output", os.path.dirname(model_file), "--images"] + images + ["--labels"] + labels + [
                "--steps", "3", "--standardize", "--choose-thresholds", "--flips", "x",
                "--class-names", "membrane", "neuron"], check=True, capture_output=True, text=True)
            self.assertIn("step 3: cells separated at seeds ", run.stdout)
            card = read_card(model_file, self)
            self.assertEqual(card["spacing"], {"values": [0.5, 0.5], "unit": "mm"})
            self.assertEqual([c["name"] for c in card["classes"]], ["membrane", "neuron"])
            self.assertEqual(card["flip_axes"], [0])
            self.assertEqual(card["provenance"]["recipe"]["standardize"], True)
            self.check_standardization(model_file, card, images)
            self.check_chosen_thresholds(model_file, card, images, labels)

    def check_standardization(self, model_file, card, images):
        mean, standard_deviation = pooled_statistics(images)
        normalization = card["normalization"]
        self.assertEqual(normalization["kind"], "standardize")
        self.assertAlmostEqual(normalization["mean"], mean, delta=1e-4 * mean)
        self.assertAlmostEqual(normalization["standard_deviation"], standard_deviation,
                               delta=1e-4 * standard_deviation)
        image = itk.imread(images[0], itk.F)
        carded = itk.UNetSegmentationImageFilter.New(image, ModelFileName=model_file)
        carded.Update()
        self.assertIn("from the model card", carded.GetAppliedNormalizationDescription())
        # The same network without the card's normalisation, standardised by the caller as the card says: the
        # same probabilities; not standardised at all: others, so the comparison can tell.
        bare = os.path.join(os.path.dirname(model_file), "bare.pt")
        with open(model_file, "rb") as source, open(bare, "wb") as copy:
            copy.write(source.read())
        model_card.write(bare, {k: v for k, v in card.items() if k != "normalization"})
        asked = itk.UNetSegmentationImageFilter.New(image, ModelFileName=bare, StandardizeImage=True,
                                                    StandardizedMean=normalization["mean"],
                                                    StandardizedStandardDeviation=normalization["standard_deviation"])
        asked.Update()
        plain = itk.UNetSegmentationImageFilter.New(image, ModelFileName=bare)
        plain.Update()
        probabilities = itk.array_from_image(carded.GetProbabilityOutput())
        np.testing.assert_array_equal(probabilities, itk.array_from_image(asked.GetProbabilityOutput()))
        self.assertGreater(np.abs(probabilities - itk.array_from_image(plain.GetProbabilityOutput())).max(), 1e-3)

    def check_chosen_thresholds(self, model_file, card, images, labels):
        """Each pair of the grid scored on the training images segmented by the filter with the saved network: the
        card's pair has the lowest adapted Rand error of the separated cells, then the lowest pixel error."""
        truths = [train_unet.read_cells(f) for f in labels]
        probabilities = []
        for file_name in images:
            segmenter = itk.UNetSegmentationImageFilter.New(itk.imread(file_name, itk.F), ModelFileName=model_file)
            segmenter.Update()
            probabilities.append(segmenter.GetProbabilityOutput())
        scores = {}
        for seed, cell in self.GRID:
            per_image = [score_segmentation.segmentation_scores(itk.array_from_image(
                itk.u_net_cell_separation_image_filter(p, seed_threshold=seed, cell_threshold=cell)) > 0, truth)
                for p, truth in zip(probabilities, truths)]
            scores[seed, cell] = (np.mean([s["rand_error"] for s in per_image]),
                                  np.mean([s["pixel_error"] for s in per_image]))
        self.assertGreater(len({round(v[0], 6) for v in scores.values()}), 1, "every pair scores alike")
        best = min(self.GRID, key=lambda pair: scores[pair])
        separation = card["cell_separation"]
        self.assertEqual((separation["seed_threshold"], separation["cell_threshold"]), best)
        chosen = card["provenance"]["cell_separation"]
        self.assertEqual((chosen["chosen"], chosen["training_images"]), (True, 2))
        self.assertAlmostEqual(chosen["rand_error"], scores[best][0], places=6)

    def test_spacing_and_unit_from_the_images_headers(self):
        with tempfile.TemporaryDirectory() as directory:
            mha, _ = write_crops(directory, (0, 1), "mha", size=8, spacing=(0.5, 0.25))
            png, _ = write_crops(directory, (0, 1), "png", size=8)
            nrrd, _ = write_crops(directory, (2,), "nrrd", size=8, spacing=(0.5, 0.5))
            self.assertEqual(train_unet.training_spacing(mha, 2), ([0.5, 0.25], "mm"))
            self.assertEqual(train_unet.training_spacing(mha, 2, unit="um"), ([0.5, 0.25], "um"))
            self.assertEqual(train_unet.training_spacing(png, 2), ([1.0, 1.0], "pixel"))
            self.assertEqual(train_unet.training_spacing(png + nrrd, 2, [0.4, 0.4]), ([0.4, 0.4], "mm"))
            with self.assertRaisesRegex(ValueError, "needs 2 positive values"):
                train_unet.training_spacing(png, 2, [0.4, 0.4, 1.0])
            with self.assertRaisesRegex(ValueError, "needs 2 positive values"):
                train_unet.training_spacing(png, 2, [0.4, 0.0])
            message = re.escape(f"spacings differ: {mha[0]} has [0.5, 0.25], {nrrd[0]} [0.5, 0.5]; ")
            with self.assertRaisesRegex(ValueError, message + ".* --spacing"):
                train_unet.training_spacing(mha + nrrd, 2)

    def test_bad_options_fail_before_training(self):
        """Images of different spacings without --spacing; --choose-thresholds with a threshold given."""
        with tempfile.TemporaryDirectory() as directory:
            mha, mha_labels = write_crops(directory, (0,), "mha", size=40, spacing=(0.5, 0.5))
            png, png_labels = write_crops(directory, (1,), "png", size=40)
            output = os.path.join(directory, "run")
            common = ["--output", output] + self.SMALL
            with self.assertRaisesRegex(ValueError, f"spacings differ: {re.escape(mha[0])} .*, {re.escape(png[0])} "):
                train_unet.train(train_unet.parse_arguments(
                    common + ["--images", mha[0], png[0], "--labels", mha_labels[0], png_labels[0]]))
            with self.assertRaisesRegex(ValueError, "--choose-thresholds .* not both"):
                train_unet.train(train_unet.parse_arguments(
                    common + ["--images", png[0], "--labels", png_labels[0], "--choose-thresholds",
                              "--cell-threshold", "0.3"]))
            self.assertEqual(os.listdir(output), [])


class Scores(unittest.TestCase):
    def test_perfect_and_known_errors(self):
        truth = np.zeros((10, 10), dtype=bool)
        truth[1:4, 1:9] = truth[6:9, 1:9] = True  # two cells of 24 voxels
        self.assertEqual(score_segmentation.segmentation_scores(truth, truth),
                         {"pixel_error": 0.0, "dice": 1.0, "rand_error": 0.0, "rand_error_thinned": 0.0})
        merged = truth.copy()
        merged[4:6, 4] = True  # joins the two cells: 2 voxels wrong
        scores = score_segmentation.segmentation_scores(merged, truth)
        self.assertAlmostEqual(scores["pixel_error"], 0.02)
        self.assertAlmostEqual(scores["dice"], 96 / 98)
        # Ordered pairs of ground-truth cell voxels in one true cell: 2 * 24 * 23; in one predicted segment: 48 * 47
        # (the merged cell holds all of them). Recall 1, precision 2 * 24 * 23 / (48 * 47).
        precision = 2 * 24 * 23 / (48 * 47)
        self.assertAlmostEqual(scores["rand_error"], 1 - 2 * precision / (1 + precision))
        # Thinning borders does not undo a merge: the prediction has no background voxel inside a true cell.
        self.assertAlmostEqual(scores["rand_error_thinned"], scores["rand_error"])

    def test_command_line_reads_cell_labels(self):
        """With --cells the prediction is a cell label image, every non-zero label a cell: two touching cells with
        labels 1 and 200 score as the truth does, where half the largest value would drop cell 1."""
        truth = np.zeros((10, 10), dtype=np.uint8)
        truth[1:4, 1:9] = truth[6:9, 1:9] = 255
        cells = np.zeros((10, 10), dtype=np.uint8)
        cells[1:4, 1:9], cells[6:9, 1:9] = 1, 200
        with tempfile.TemporaryDirectory() as directory:
            files = [os.path.join(directory, name) for name in ("cells.nrrd", "truth.png")]
            itk.imwrite(itk.image_from_array(cells), files[0])
            itk.imwrite(itk.image_from_array(truth), files[1])
            script = [sys.executable, "-m", "itk_unetsegmentation.scoring"]
            run = subprocess.run(script + ["--cells"] + files, check=True, capture_output=True, text=True)
            self.assertIn("pixel error 0.0000, cell Dice 1.0000, adapted Rand error 0.0000", run.stdout)
            run = subprocess.run(script + files, check=True, capture_output=True, text=True)
            self.assertIn("pixel error 0.2400", run.stdout)  # without --cells cell 1 (24 voxels) is not a cell

    def test_predicted_background_inside_a_cell_is_one_more_segment(self):
        """Predicted membrane voxels inside a true cell form one segment (the predicted background, as
        skimage.metrics.adapted_rand_error counts label 0 of the prediction): a cell with a hole of 4 voxels loses the
        pairs between the hole and the rest of the cell, and keeps those within the hole."""
        truth = np.zeros((8, 8), dtype=bool)
        truth[1:7, 1:7] = True
        prediction = truth.copy()
        prediction[2:4, 2:4] = False
        n, hole = 36, 4
        recall = ((n - hole) * (n - hole - 1) + hole * (hole - 1)) / (n * (n - 1))
        expected = 1 - 2 * recall / (1 + recall)
        scores = score_segmentation.segmentation_scores(prediction, truth)
        self.assertAlmostEqual(scores["rand_error"], expected)
        # With the borders thinned the hole joins the cell around it.
        self.assertEqual(scores["rand_error_thinned"], 0.0)

    def test_thick_border_costs_nothing_once_thinned(self):
        """Two true cells apart by a one-voxel membrane, predicted apart by three: the plain score counts the extra
        membrane voxels over each cell as one more segment; thinned, each joins its nearest cell and nothing is
        wrong. A cell mistaken for background joins a neighbour once thinned: a merge."""
        truth = np.zeros((11, 8), dtype=bool)
        truth[0:5] = truth[6:11] = True
        prediction = np.zeros_like(truth)
        prediction[0:4] = prediction[7:11] = True
        # Plain: true voxels in rows 4 and 6 (8 each, one per cell) form one predicted segment of 16.
        n, extra = 40, 8
        precision = 2 * ((n - extra) * (n - extra - 1) + extra * (extra - 1)) / (2 * (n - extra) * (n - extra - 1)
                                                                               + 2 * extra * (2 * extra - 1))
        recall = 2 * ((n - extra) * (n - extra - 1) + extra * (extra - 1)) / (2 * n * (n - 1))
        scores = score_segmentation.segmentation_scores(prediction, truth)
        self.assertAlmostEqual(scores["rand_error"], 1 - 2 * precision * recall / (precision + recall))
        self.assertEqual(scores["rand_error_thinned"], 0.0)
        only_one = prediction.copy()
        only_one[7:11] = False
        merged = score_segmentation.segmentation_scores(only_one, truth)["rand_error_thinned"]
        precision = 2 * n * (n - 1) / (2 * n * (2 * n - 1))
        self.assertAlmostEqual(merged, 1 - 2 * precision / (1 + precision))


if __name__ == "__main__":
    unittest.main()
