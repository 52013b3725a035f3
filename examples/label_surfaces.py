#!/usr/bin/env python3
"""Surfaces of a label map from Python: one closed, smoothed surface per class (or per piece of each class), made by
this module's C++ code, the program UNetLabelSurfaces (examples/LabelSurfaces.cxx, the visualization library), and
read back with Debian's VTK (python3-vtk9) as vtkPolyData.

    label_surfaces.py labels.nrrd surfaces.vtp [--instances] [--iterations N] [--pass-band B]

From Python:

    import label_surfaces
    for label, instance, surface in label_surfaces.label_surfaces("labels.nrrd", "surfaces.vtp"):   # vtkPolyData
        print(label, instance, surface.GetNumberOfPolys())

Every label but 0 gets a surface, written to the output name with "-<label>" (or "-<label>-<k>" for the k-th largest
piece, with instances) before the extension; .vtp, .vtk, .stl, .ply or .obj. Coordinates are physical (the image's
origin, spacing and direction: LPS). The program is found in UNET_LABEL_SURFACES, or beside this file's build tree
(build/examples/UNetLabelSurfaces).
"""
import os
import re
import subprocess
import sys

import vtk

_READERS = {".vtp": vtk.vtkXMLPolyDataReader, ".vtk": vtk.vtkPolyDataReader, ".stl": vtk.vtkSTLReader,
            ".ply": vtk.vtkPLYReader, ".obj": vtk.vtkOBJReader}
_WRITTEN = re.compile(r"^label (\d+)(?: piece (\d+))?: .* -> (.+)$")


def program():
    """The UNetLabelSurfaces program."""
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "examples", "UNetLabelSurfaces")
    return os.environ.get("UNET_LABEL_SURFACES", default)


def read_surface(file_name):
    """A surface file the program wrote, as vtkPolyData."""
    extension = os.path.splitext(file_name)[1].lower()
    if extension not in _READERS:
        raise ValueError(f"unknown surface file extension {extension!r}; use one of {', '.join(_READERS)}")
    reader = _READERS[extension]()
    reader.SetFileName(file_name)
    reader.Update()
    return reader.GetOutput()


def label_surfaces(labels_file, output, instances=False, iterations=None, pass_band=None):
    """Runs UNetLabelSurfaces on `labels_file` (any label map ITK reads), writing to `output` as it does, and returns
    [(label, instance, vtkPolyData)] in the order written (instance 0 without `instances`). Raises ValueError with the
    program's message when it fails."""
    command = [program(), os.fspath(labels_file), os.fspath(output)]
    command += ["--instances"] if instances else []
    command += ["--iterations", str(iterations)] if iterations is not None else []
    command += ["--pass-band", str(pass_band)] if pass_band is not None else []
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ValueError(f"UNetLabelSurfaces failed: {result.stderr.strip()}")
    surfaces = []
    for line in result.stdout.splitlines():
        written = _WRITTEN.match(line)
        if written:
            label, piece, file_name = written.groups()
            surfaces.append((int(label), int(piece or 0), read_surface(file_name)))
    return surfaces


if __name__ == "__main__":
    sys.exit(subprocess.run([program()] + sys.argv[1:]).returncode)
