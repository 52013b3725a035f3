/*=========================================================================
 *
 *  Copyright NumFOCUS
 *
 *  Licensed under the Apache License, Version 2.0 (the "License");
 *  you may not use this file except in compliance with the License.
 *  You may obtain a copy of the License at
 *
 *         http://www.apache.org/licenses/LICENSE-2.0.txt
 *
 *  Unless required by applicable law or agreed to in writing, software
 *  distributed under the License is distributed on an "AS IS" BASIS,
 *  WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 *  See the License for the specific language governing permissions and
 *  limitations under the License.
 *
 *=========================================================================*/
#ifndef itkUNetLabelSurfaces_h
#define itkUNetLabelSurfaces_h

#include <vtkImageData.h>
#include <vtkPolyData.h>
#include <vtkSmartPointer.h>

#include <string>
#include <vector>

namespace itk
{

/** One surface of a label map: the boundary of one class (Instance 0) or of one connected piece of it. */
struct UNetLabelSurface
{
  long long Label{ 0 };
  /** 0: the whole class; k > 0: its k-th largest face-connected piece. */
  unsigned int                 Instance{ 0 };
  vtkSmartPointer<vtkPolyData> Surface;
};

struct UNetLabelSurfaceOptions
{
  /** One surface per face-connected piece of each class (vtkImageConnectivityFilter, numbered by size). */
  bool SeparateInstances{ false };
  /** vtkWindowedSincPolyDataFilter's iterations and pass band (3D Slicer's defaults); 0 iterations: no smoothing. */
  int    SmoothingIterations{ 20 };
  double PassBand{ 0.01 };
};

/** \brief One closed surface per label (every value but 0) of a 3-D label map, in physical coordinates.
 *
 * Each class is cropped to its bounding box grown by one voxel of background on every side (vtkImageConstantPad),
 * so that surfaces touching the volume's edge are closed too; vtkDiscreteFlyingEdges3D makes the voxel boundary,
 * vtkWindowedSincPolyDataFilter smooths it, and the image's index-to-physical matrix (origin, spacing, direction) puts
 * it into physical space (LPS for images from ITK). Triangles are ordered so that normals point out of the object,
 * also for a direction with negative determinant, and point normals are added. Field data "Label" and "Instance"
 * name the surface. The surfaces come sorted by label, then instance.
 *
 * A 2-D label map (one slice, z extent 0..0) gives closed contour lines instead (vtkDiscreteFlyingEdges2D,
 * not smoothed), as drawn over images by UNetRenderLabelContours.
 *
 * Labels must be integers; a label map of a floating-point type with a fractional value throws an
 * itk::ExceptionObject, as do a null image and a negative number of iterations or a pass band outside [0, 2].
 *
 * \ingroup UNetSegmentation
 */
std::vector<UNetLabelSurface>
UNetExtractLabelSurfaces(vtkImageData * labels, const UNetLabelSurfaceOptions & options = {});

/** \brief Writes a surface, the format chosen by the extension: .vtp (VTK XML), .vtk (legacy VTK 4.2, as 3D Slicer
 * writes it), .stl, .ply or .obj.
 *
 * The coordinates are LPS; the file says so where the format has room, as 3D Slicer does ("SPACE=LPS": a field
 * data string array in .vtp, the header of .vtk and .stl, a comment in .ply), so that Slicer loads it in place
 * (it assumes LPS for files that do not say). Contour lines (from a 2-D label map) go to .vtp or .vtk only.
 * Throws an itk::ExceptionObject for an unknown extension or a failed write.
 *
 * \ingroup UNetSegmentation
 */
void
UNetWriteSurface(vtkPolyData * surface, const std::string & fileName);

/** The file name of one surface: "-<label>" (and "-<instance>" for an instance) inserted before the extension,
 * e.g. "out/liver.vtp" -> "out/liver-2.vtp", "out/liver-2-3.vtp". */
std::string
UNetSurfaceFileName(const std::string & fileName, const UNetLabelSurface & surface);

} // namespace itk

#endif // itkUNetLabelSurfaces_h
