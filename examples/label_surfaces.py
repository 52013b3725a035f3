#!/usr/bin/env python3
"""One closed, smoothed surface per class of a label map, from Python, with ITK and Debian's VTK (python3-vtk9).

    label_surfaces.py labels.nrrd surfaces.vtp [--instances] [--iterations N] [--pass-band B]

The same surfaces, in the same order and with the same file names, as the C++ program UNetLabelSurfaces
(examples/LabelSurfaces.cxx, visualization/itkUNetLabelSurfaces.cxx): every label but 0 gets a surface, written to
the output name with "-<label>" (or "-<label>-<k>" for the k-th largest piece, --instances) before the extension;
.vtp, .vtk, .stl, .ply or .obj. Coordinates are physical (the image's origin, spacing and direction: LPS).

From Python:

    import itk, label_surfaces
    labels = itk.imread("labels.nrrd")
    for label, instance, surface in label_surfaces.label_surfaces(labels):   # vtkPolyData
        label_surfaces.write_surface(surface, f"label-{label}.vtp")
"""
import argparse
import os

import numpy as np
import vtk
from vtk.util import numpy_support

import itk


def image_to_vtk(image):
    """The ITK image as a vtkImageData: pixels copied, extent = ITK's buffered index range, ITK's origin, spacing and
    direction (a 2-D image becomes one slice at z = 0)."""
    pixels = itk.array_view_from_image(image)  # (z,) y, x: x fastest, as VTK stores it
    dimension = image.GetImageDimension()
    region = image.GetBufferedRegion()
    index, size = region.GetIndex(), region.GetSize()
    extent = [0] * 6
    origin, spacing, direction = np.zeros(3), np.ones(3), np.eye(3)
    matrix = itk.array_from_matrix(image.GetDirection())
    for axis in range(dimension):
        extent[2 * axis], extent[2 * axis + 1] = index[axis], index[axis] + size[axis] - 1
        origin[axis], spacing[axis] = image.GetOrigin()[axis], image.GetSpacing()[axis]
    direction[:dimension, :dimension] = matrix
    result = vtk.vtkImageData()
    result.SetExtent(extent)
    result.SetOrigin(origin)
    result.SetSpacing(spacing)
    result.SetDirectionMatrix(direction.ravel())
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(pixels).ravel(), deep=True)
    scalars.SetName("Pixels")
    result.GetPointData().SetScalars(scalars)
    return result


def _grown(box, is_3d):
    grown = list(box)
    for axis in range(3 if is_3d else 2):
        grown[2 * axis] -= 1
        grown[2 * axis + 1] += 1
    return grown


def _contour(index_space, box, value, is_3d):
    """The boundary of the voxels equal to value inside box, padded by one voxel of background, in index space."""
    pad = vtk.vtkImageConstantPad()
    pad.SetInputData(index_space)
    pad.SetOutputWholeExtent(_grown(box, is_3d))
    pad.SetConstant(0.0)
    if is_3d:
        contour = vtk.vtkDiscreteFlyingEdges3D()
        contour.ComputeNormalsOff()
        contour.ComputeGradientsOff()
        contour.SetInputConnection(pad.GetOutputPort())
    else:
        # VTK 9.1's vtkDiscreteFlyingEdges2D places its output as if the extent started at 0: give it the pixels
        # with an extent from 0 and the start as origin, right with or without that.
        pad.Update()
        grown = _grown(box, is_3d)
        from_zero = vtk.vtkImageData()
        from_zero.SetExtent(0, grown[1] - grown[0], 0, grown[3] - grown[2], 0, 0)
        from_zero.SetOrigin(grown[0], grown[2], grown[4])
        from_zero.GetPointData().SetScalars(pad.GetOutput().GetPointData().GetScalars())
        contour = vtk.vtkDiscreteFlyingEdges2D()
        contour.SetInputData(from_zero)
    contour.ComputeScalarsOff()
    contour.SetValue(0, value)
    contour.Update()
    return contour.GetOutput()


def _finish(surface, index_to_physical, is_3d, iterations, pass_band, label, instance):
    """Smoothing (3-D), index space to physical space, outward triangles and point normals (3-D)."""
    if is_3d and iterations > 0:
        smoother = vtk.vtkWindowedSincPolyDataFilter()
        smoother.SetInputData(surface)
        smoother.SetNumberOfIterations(iterations)
        smoother.SetPassBand(pass_band)
        smoother.NormalizeCoordinatesOn()
        smoother.BoundarySmoothingOff()
        smoother.FeatureEdgeSmoothingOff()
        smoother.NonManifoldSmoothingOn()
        smoother.Update()
        surface = smoother.GetOutput()
    transform = vtk.vtkTransform()
    transform.SetMatrix(index_to_physical)
    transformer = vtk.vtkTransformPolyDataFilter()
    transformer.SetInputData(surface)
    transformer.SetTransform(transform)
    transformer.Update()
    surface = transformer.GetOutput()
    if is_3d:
        if index_to_physical.Determinant() < 0:  # a left-handed direction turns triangles inward
            reverse = vtk.vtkReverseSense()
            reverse.SetInputData(surface)
            reverse.ReverseCellsOn()
            reverse.Update()
            surface = reverse.GetOutput()
        normals = vtk.vtkPolyDataNormals()
        normals.SetInputData(surface)
        normals.SplittingOff()
        normals.ConsistencyOff()
        normals.AutoOrientNormalsOff()
        normals.ComputePointNormalsOn()
        normals.ComputeCellNormalsOff()
        normals.Update()
        surface = normals.GetOutput()
    result = vtk.vtkPolyData()
    result.ShallowCopy(surface)
    for name, value, array_type in (("Label", label, vtk.vtkLongLongArray), ("Instance", instance, vtk.vtkIntArray)):
        array = array_type()
        array.SetName(name)
        array.InsertNextValue(value)
        result.GetFieldData().AddArray(array)
    return result


def label_surfaces(labels, instances=False, iterations=20, pass_band=0.01):
    """[(label, instance, vtkPolyData)] for every label but 0 of an ITK label map (or a vtkImageData), sorted by label
    and instance: instance 0 is the whole class; with instances=True, instance k is the k-th largest face-connected
    piece instead. 3-D: closed surfaces (vtkDiscreteFlyingEdges3D on the class padded with background, then
    vtkWindowedSincPolyDataFilter), in physical coordinates, triangles facing out; 2-D: contour lines."""
    if iterations < 0 or not 0.0 <= pass_band <= 2.0:
        raise ValueError(f"smoothing needs iterations >= 0 and a pass band in [0, 2], not {iterations} and {pass_band}")
    image = labels if isinstance(labels, vtk.vtkImageData) else image_to_vtk(labels)
    values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    extent = image.GetExtent()
    is_3d = extent[5] > extent[4]
    shape = [extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1]
    values = values.reshape(shape)
    # The same index-space pipeline as the C++ program: VTK 9.1's imaging filters drop the direction.
    index_space = vtk.vtkImageData()
    index_space.SetExtent(extent)
    index_space.GetPointData().SetScalars(image.GetPointData().GetScalars())
    index_to_physical = image.GetIndexToPhysicalMatrix()

    surfaces = []
    present = np.unique(values)
    for label in present[present != 0]:
        if label != np.floor(label):
            raise ValueError(f"labels must be integers; the label map has the value {label}")
        k, j, i = np.nonzero(values == label)
        box = [i.min() + extent[0], i.max() + extent[0], j.min() + extent[2], j.max() + extent[2],
               k.min() + extent[4], k.max() + extent[4]]
        box = [int(b) for b in box]
        label = int(label)
        if not instances:
            contour = _contour(index_space, box, label, is_3d)
            surfaces.append((label, 0, _finish(contour, index_to_physical, is_3d, iterations, pass_band, label, 0)))
            continue
        crop = vtk.vtkImageConstantPad()
        crop.SetInputData(index_space)
        crop.SetOutputWholeExtent(_grown(box, is_3d))
        crop.SetConstant(0.0)
        connectivity = vtk.vtkImageConnectivityFilter()
        connectivity.SetInputConnection(crop.GetOutputPort())
        connectivity.SetScalarRange(label, label)
        connectivity.SetExtractionModeToAllRegions()
        connectivity.SetLabelModeToSizeRank()
        connectivity.SetLabelScalarTypeToInt()
        connectivity.GenerateRegionExtentsOn()
        connectivity.Update()
        region_labels = numpy_support.vtk_to_numpy(connectivity.GetExtractedRegionLabels())
        region_extents = numpy_support.vtk_to_numpy(connectivity.GetExtractedRegionExtents()).reshape(-1, 6)
        for instance, piece_box in sorted(zip(region_labels.tolist(), region_extents.tolist())):
            contour = _contour(connectivity.GetOutput(), piece_box, instance, is_3d)
            surfaces.append((label, instance,
                             _finish(contour, index_to_physical, is_3d, iterations, pass_band, label, instance)))
    return surfaces


def surface_file_name(file_name, label, instance):
    """"-<label>" (and "-<instance>") inserted before the extension, as the C++ program names its files."""
    stem, extension = os.path.splitext(file_name)
    return f"{stem}-{label}{f'-{instance}' if instance else ''}{extension}"


def write_surface(surface, file_name):
    """Writes a vtkPolyData by extension (.vtp, .vtk, .stl, .ply, .obj), saying SPACE=LPS where the format has room,
    as 3D Slicer does."""
    extension = os.path.splitext(file_name)[1].lower()
    header = "UNetSegmentation surface. SPACE=LPS"
    if extension == ".vtp":
        surface_with_space = vtk.vtkPolyData()
        surface_with_space.ShallowCopy(surface)
        field_data = vtk.vtkFieldData()
        field_data.DeepCopy(surface.GetFieldData())
        space = vtk.vtkStringArray()
        space.SetName("SPACE")
        space.InsertNextValue("LPS")
        field_data.AddArray(space)
        surface_with_space.SetFieldData(field_data)
        writer = vtk.vtkXMLPolyDataWriter()
        writer.SetInputData(surface_with_space)
    elif extension == ".vtk":
        writer = vtk.vtkPolyDataWriter()
        writer.SetInputData(surface)
        writer.SetFileVersion(vtk.vtkDataWriter.VTK_LEGACY_READER_VERSION_4_2)
        writer.SetFileTypeToBinary()
        writer.SetHeader(header)
    elif extension in (".stl", ".ply", ".obj"):
        if surface.GetNumberOfPolys() == 0 and surface.GetNumberOfLines() > 0:
            raise ValueError(f"{file_name}: {extension} holds triangles; write contour lines as .vtp or .vtk")
        if extension == ".stl":
            writer = vtk.vtkSTLWriter()
            writer.SetFileTypeToBinary()
            writer.SetHeader(header)
        elif extension == ".ply":
            writer = vtk.vtkPLYWriter()
            writer.SetFileTypeToBinary()
            writer.AddComment("SPACE=LPS")
        else:
            writer = vtk.vtkOBJWriter()
        writer.SetInputData(surface)
    else:
        raise ValueError(f"{file_name}: unknown surface file extension (.vtp, .vtk, .stl, .ply, .obj)")
    writer.SetFileName(file_name)
    if not writer.Write() or writer.GetErrorCode():
        raise OSError(f"could not write {file_name}: {vtk.vtkErrorCode.GetStringFromErrorCode(writer.GetErrorCode())}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("labels", help="label map file (any format ITK reads)")
    parser.add_argument("output", help="surface file name: .vtp, .vtk, .stl, .ply or .obj")
    parser.add_argument("--instances", action="store_true", help="one surface per face-connected piece of a class")
    parser.add_argument("--iterations", type=int, default=20, help="windowed sinc smoothing iterations (0: none)")
    parser.add_argument("--pass-band", type=float, default=0.01, help="windowed sinc pass band")
    arguments = parser.parse_args()
    labels = itk.imread(arguments.labels, itk.F)  # float holds integer labels exactly up to 2^24
    surfaces = label_surfaces(labels, arguments.instances, arguments.iterations, arguments.pass_band)
    if not surfaces:
        print(f"{arguments.labels} has no label other than 0: nothing to write")
    for label, instance, surface in surfaces:
        file_name = surface_file_name(arguments.output, label, instance)
        write_surface(surface, file_name)
        print(f"label {label}{f' piece {instance}' if instance else ''}: {surface.GetNumberOfPolys()} triangles"
              f" -> {file_name}")


if __name__ == "__main__":
    main()
