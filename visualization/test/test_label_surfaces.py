"""The Python surfaces (examples/label_surfaces.py, which runs the C++ program UNetLabelSurfaces) lie where ITK puts
the voxels; the picture program (UNetRenderLabels) draws 2-D and 3-D label maps under xvfb-run and fails with a clear
message without a display."""
import glob
import os
import subprocess
import tempfile
import unittest

import numpy as np
import vtk
from vtk.util import numpy_support

import itk
import label_surfaces

LABEL_SURFACES = os.environ["UNET_LABEL_SURFACES"]
RENDER_LABELS = os.environ["UNET_RENDER_LABELS"]
XVFB_RUN = os.environ.get("UNET_XVFB_RUN", "")
ISBI = os.environ["UNET_ISBI_DIR"]


def label_map():
    """Label 1: a ball and a smaller one beside it; label 3: a ball cut by the volume's edge. Anisotropic spacing,
    a rotated and mirrored direction, an origin."""
    shape = (30, 36, 44)  # z, y, x
    k, j, i = np.indices(shape)
    labels = np.zeros(shape, np.uint8)
    labels[(i - 14) ** 2 + ((j - 16) * 1.4) ** 2 + ((k - 15) * 1.8) ** 2 <= 64] = 1
    labels[(i - 32) ** 2 + ((j - 18) * 1.4) ** 2 + ((k - 15) * 1.8) ** 2 <= 20] = 1
    labels[(i - 40) ** 2 + ((j - 34) * 1.4) ** 2 + ((k - 27) * 1.8) ** 2 <= 40] = 3
    image = itk.image_from_array(labels)
    image.SetSpacing([0.5, 0.7, 0.9])
    image.SetOrigin([10.0, -4.0, 7.5])
    angle = np.radians(35.0)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, -1.0]])
    image.SetDirection(itk.matrix_from_array(direction))
    return image


def read_picture(file_name):
    """Rows (top first), columns, RGB. (VTK's reader: this ITK build wraps no RGB images for Python.)"""
    reader = vtk.vtkPNGReader()
    reader.SetFileName(file_name)
    reader.Update()
    width, height, _ = reader.GetOutput().GetDimensions()
    pixels = numpy_support.vtk_to_numpy(reader.GetOutput().GetPointData().GetScalars())
    return pixels.reshape(height, width, -1)[::-1]  # VTK's row 0 is the bottom one


class SurfacesFromPython(unittest.TestCase):
    """examples/label_surfaces.py drives the C++ program and reads what it writes."""

    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="label-surfaces-", dir=os.environ["UNET_TEST_OUTPUT_DIR"])
        self.labels_file = os.path.join(self.directory, "labels.nrrd")
        itk.imwrite(label_map(), self.labels_file)

    def surfaces(self, name, **options):
        output = os.path.join(self.directory, name)
        return output, label_surfaces.label_surfaces(self.labels_file, output, **options)

    def test_one_surface_per_class_or_piece_in_physical_space(self):
        for options, expected in (({}, [(1, 0), (3, 0)]), ({"instances": True}, [(1, 1), (1, 2), (3, 1)])):
            output, surfaces = self.surfaces(f"surfaces{len(options)}.vtp", **options)
            self.assertEqual([(label, instance) for label, instance, _ in surfaces], expected)
            for _, _, surface in surfaces:
                self.assertGreater(surface.GetNumberOfPolys(), 0)
                self.assertEqual(surface.GetFieldData().GetAbstractArray("SPACE").GetValue(0), "LPS")
            self.assertEqual(len(glob.glob(output.replace(".vtp", "-*.vtp"))), len(expected))

    def test_surfaces_are_where_itk_puts_the_voxels(self):
        # Unsmoothed, the boundary runs through the midpoints between voxels in and out of the class: beyond the
        # outermost voxel centres (ITK's TransformIndexToPhysicalPoint) along every physical axis, by at most half
        # the longest voxel step (0.45 here).
        image = itk.imread(self.labels_file)
        array = itk.array_view_from_image(image)
        for label, _, surface in self.surfaces("unsmoothed.stl", iterations=0)[1]:
            k, j, i = np.nonzero(array == label)
            centres = np.array([image.TransformIndexToPhysicalPoint([int(a), int(b), int(c)])
                                for a, b, c in zip(i, j, k)])
            bounds = np.array(surface.GetBounds()).reshape(3, 2)
            np.testing.assert_array_less(bounds[:, 0], centres.min(axis=0))
            np.testing.assert_array_less(centres.max(axis=0), bounds[:, 1])
            np.testing.assert_array_less(centres.min(axis=0) - 0.45 - 1e-5, bounds[:, 0])
            np.testing.assert_array_less(bounds[:, 1], centres.max(axis=0) + 0.45 + 1e-5)

    def test_smoothing_shrinks_the_staircase(self):
        unsmoothed = self.surfaces("unsmoothed.vtp", iterations=0)[1]
        smoothed = self.surfaces("smoothed.vtp")[1]
        for (_, _, rough), (_, _, smooth) in zip(unsmoothed, smoothed):
            area = vtk.vtkMassProperties()
            area.SetInputData(rough)
            area.Update()
            smooth_area = vtk.vtkMassProperties()
            smooth_area.SetInputData(smooth)
            smooth_area.Update()
            self.assertLess(smooth_area.GetSurfaceArea(), area.GetSurfaceArea())

    def test_the_script_is_the_program(self):
        output = os.path.join(self.directory, "script.ply")
        subprocess.run(["/usr/bin/python3", label_surfaces.__file__, self.labels_file, output], check=True,
                       env=os.environ, capture_output=True)
        self.assertEqual(sorted(os.path.basename(f) for f in glob.glob(output.replace(".ply", "-*.ply"))),
                         ["script-1.ply", "script-3.ply"])

    def test_bad_input_raises_the_programs_message(self):
        with self.assertRaisesRegex(ValueError, "unknown surface file extension"):
            label_surfaces.label_surfaces(self.labels_file, os.path.join(self.directory, "x.xyz"))
        with self.assertRaisesRegex(ValueError, "UNetLabelSurfaces failed"):
            label_surfaces.label_surfaces(os.path.join(self.directory, "missing.nrrd"), "y.vtp")
        result = subprocess.run([LABEL_SURFACES, self.labels_file, os.path.join(self.directory, "x.xyz")],
                                capture_output=True, text=True)
        self.assertEqual(result.returncode, 1)
        self.assertIn("unknown surface file extension", result.stderr)


@unittest.skipUnless(XVFB_RUN or os.environ.get("DISPLAY"), "needs xvfb-run or a display")
class Pictures(unittest.TestCase):
    def render(self, arguments, environment=None):
        command = [RENDER_LABELS] + arguments
        if XVFB_RUN:
            command = [XVFB_RUN, "-a", "-s", "-screen 0 1280x1024x24"] + command
        return subprocess.run(command, capture_output=True, text=True, env=environment)

    def test_contours_over_the_segmented_slice(self):
        output = os.path.join(os.environ["UNET_TEST_OUTPUT_DIR"], "isbi-23-contours.png")
        result = self.render([os.path.join(ISBI, "label", "23.png"), output,
                              "--image", os.path.join(ISBI, "image", "23.png")])
        self.assertEqual(result.returncode, 0, result.stderr)
        picture = read_picture(output)
        self.assertEqual(picture.shape, (512, 512, 3))
        # Label 255's colour (the palette's fifth, orange) on the outlines, the slice's greys elsewhere.
        orange = np.all(np.abs(picture.astype(int) - [245, 130, 48]) <= 3, axis=2)
        grey = (picture[..., 0] == picture[..., 1]) & (picture[..., 1] == picture[..., 2])
        self.assertGreater(orange.mean(), 0.02)
        self.assertGreater(grey.mean(), 0.5)

    def test_surfaces_of_a_volume(self):
        directory = tempfile.mkdtemp(prefix="pictures-", dir=os.environ["UNET_TEST_OUTPUT_DIR"])
        labels_file = os.path.join(directory, "labels.nrrd")
        itk.imwrite(label_map(), labels_file)
        output = os.path.join(directory, "surfaces.png")
        result = self.render([labels_file, output, "--size", "200x150"])
        self.assertEqual(result.returncode, 0, result.stderr)
        picture = read_picture(output)
        self.assertEqual(picture.shape, (150, 200, 3))
        background = picture[0, 0]
        self.assertGreater(np.any(picture != background, axis=2).mean(), 0.05)

    def test_without_a_display_says_what_to_do(self):
        environment = {key: value for key, value in os.environ.items() if key != "DISPLAY"}
        result = subprocess.run([RENDER_LABELS, os.path.join(ISBI, "label", "23.png"), "unused.png"],
                                capture_output=True, text=True, env=environment)
        self.assertEqual(result.returncode, 1)  # an error message, not VTK's abort
        self.assertIn("xvfb-run", result.stderr)


if __name__ == "__main__":
    unittest.main()
