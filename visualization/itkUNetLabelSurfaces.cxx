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
#include "itkUNetLabelSurfaces.h"

#include "itkMacro.h"

#include <vtkDiscreteFlyingEdges2D.h>
#include <vtkDiscreteFlyingEdges3D.h>
#include <vtkErrorCode.h>
#include <vtkFieldData.h>
#include <vtkImageConnectivityFilter.h>
#include <vtkImageConstantPad.h>
#include <vtkIntArray.h>
#include <vtkLongLongArray.h>
#include <vtkMatrix4x4.h>
#include <vtkNew.h>
#include <vtkOBJWriter.h>
#include <vtkPLYWriter.h>
#include <vtkPointData.h>
#include <vtkPolyDataNormals.h>
#include <vtkPolyDataWriter.h>
#include <vtkReverseSense.h>
#include <vtkSTLWriter.h>
#include <vtkStringArray.h>
#include <vtkTransform.h>
#include <vtkTransformPolyDataFilter.h>
#include <vtkWindowedSincPolyDataFilter.h>
#include <vtkXMLPolyDataWriter.h>

#include "itkUNetVTKImage.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <sstream>

namespace itk
{
namespace
{
using Extent = std::array<int, 6>;

/** Each nonzero label's bounding box (index extent), in one pass over the pixels. */
template <typename TPixel>
void
CollectLabelExtents(const TPixel * pixels, const int extent[6], std::map<long long, Extent> & boxes)
{
  Extent *     box = nullptr;
  TPixel       boxLabel{};
  const TPixel background{};
  for (int k = extent[4]; k <= extent[5]; ++k)
  {
    for (int j = extent[2]; j <= extent[3]; ++j)
    {
      for (int i = extent[0]; i <= extent[1]; ++i)
      {
        const TPixel value = *pixels++;
        if (value == background)
        {
          continue;
        }
        if (box == nullptr || value != boxLabel) // labels come in runs: look the box up only when the label changes
        {
          if (std::is_floating_point<TPixel>::value && std::floor(static_cast<double>(value)) != value)
          {
            itkGenericExceptionMacro("UNetExtractLabelSurfaces: labels must be integers; the label map has the value "
                                     << static_cast<double>(value) << " at index (" << i << ", " << j << ", " << k
                                     << ")");
          }
          const Extent empty{ i, i, j, j, k, k };
          box = &boxes.emplace(static_cast<long long>(value), empty).first->second;
          boxLabel = value;
        }
        (*box)[0] = std::min((*box)[0], i);
        (*box)[1] = std::max((*box)[1], i);
        (*box)[2] = std::min((*box)[2], j);
        (*box)[3] = std::max((*box)[3], j);
        (*box)[4] = std::min((*box)[4], k);
        (*box)[5] = std::max((*box)[5], k);
      }
    }
  }
}

/** The box grown by one voxel on each side of the image's axes (not along z of a 2-D image). */
Extent
Grown(const Extent & box, bool is3D)
{
  Extent grown = box;
  for (int axis = 0; axis < (is3D ? 3 : 2); ++axis)
  {
    --grown[2 * axis];
    ++grown[2 * axis + 1];
  }
  return grown;
}

/** The boundary of the voxels equal to `value` in `box`, in index space. Padding the box with background closes the
 * boundary where the object touches the volume's edge. */
vtkSmartPointer<vtkPolyData>
ContourInIndexSpace(vtkImageData * indexSpace, const Extent & box, double value, bool is3D)
{
  const Extent                grown = Grown(box, is3D);
  vtkNew<vtkImageConstantPad> pad; // crops inside the image, fills with 0 outside it
  pad->SetInputData(indexSpace);
  pad->SetOutputWholeExtent(const_cast<int *>(grown.data()));
  pad->SetConstant(0.0);
  if (is3D)
  {
    vtkNew<vtkDiscreteFlyingEdges3D> flyingEdges;
    flyingEdges->ComputeNormalsOff(); // computed once the surface is smooth and in physical space
    flyingEdges->ComputeGradientsOff();
    flyingEdges->ComputeScalarsOff();
    flyingEdges->SetValue(0, value);
    flyingEdges->SetInputConnection(pad->GetOutputPort());
    flyingEdges->Update();
    return flyingEdges->GetOutput();
  }
  // VTK 9.1's vtkDiscreteFlyingEdges2D places its output as if the extent started at 0 (vtkFlyingEdges2D and the
  // 3-D filter do not): give it the pixels with an extent from 0 and the start as origin, right with or without that.
  pad->Update();
  vtkNew<vtkImageData> fromZero;
  fromZero->SetExtent(0, grown[1] - grown[0], 0, grown[3] - grown[2], 0, 0);
  fromZero->SetOrigin(grown[0], grown[2], grown[4]);
  fromZero->GetPointData()->SetScalars(pad->GetOutput()->GetPointData()->GetScalars());
  vtkNew<vtkDiscreteFlyingEdges2D> flyingEdges;
  flyingEdges->ComputeScalarsOff();
  flyingEdges->SetValue(0, value);
  flyingEdges->SetInputData(fromZero);
  flyingEdges->Update();
  return flyingEdges->GetOutput();
}

/** Smoothing (3-D), index space to physical space, outward triangles and point normals (3-D). */
vtkSmartPointer<vtkPolyData>
FinishSurface(vtkPolyData * indexSpaceSurface, vtkMatrix4x4 * indexToPhysical, bool is3D,
              const UNetLabelSurfaceOptions & options, long long label, unsigned int instance)
{
  vtkSmartPointer<vtkPolyData> surface = indexSpaceSurface;
  if (is3D && options.SmoothingIterations > 0)
  {
    // A windowed sinc filter moves each vertex by a fixed combination of its neighbours' positions, which commutes
    // with the affine map to physical space: smoothing in index space gives the surface smoothed in physical space.
    vtkNew<vtkWindowedSincPolyDataFilter> smoother;
    smoother->SetInputData(surface);
    smoother->SetNumberOfIterations(options.SmoothingIterations);
    smoother->SetPassBand(options.PassBand);
    smoother->NormalizeCoordinatesOn();
    smoother->BoundarySmoothingOff();
    smoother->FeatureEdgeSmoothingOff();
    smoother->NonManifoldSmoothingOn();
    smoother->Update();
    surface = smoother->GetOutput();
  }

  vtkNew<vtkTransform> toPhysical;
  toPhysical->SetMatrix(indexToPhysical);
  vtkNew<vtkTransformPolyDataFilter> transformer;
  transformer->SetInputData(surface);
  transformer->SetTransform(toPhysical);
  transformer->Update();
  surface = transformer->GetOutput();

  if (is3D)
  {
    // Flying edges orders the triangles so that their normals point out of the object in index space; a map with
    // negative determinant (a left-handed direction) turns them inward.
    if (indexToPhysical->Determinant() < 0.0)
    {
      vtkNew<vtkReverseSense> reverse;
      reverse->SetInputData(surface);
      reverse->ReverseCellsOn();
      reverse->Update();
      surface = reverse->GetOutput();
    }
    vtkNew<vtkPolyDataNormals> normals;
    normals->SetInputData(surface);
    normals->SplittingOff();
    normals->ConsistencyOff(); // the order is already consistent and outward
    normals->AutoOrientNormalsOff();
    normals->ComputePointNormalsOn();
    normals->ComputeCellNormalsOff();
    normals->Update();
    surface = normals->GetOutput();
  }

  auto result = vtkSmartPointer<vtkPolyData>::New();
  result->ShallowCopy(surface);
  vtkNew<vtkLongLongArray> labelArray;
  labelArray->SetName("Label");
  labelArray->InsertNextValue(label);
  result->GetFieldData()->AddArray(labelArray);
  vtkNew<vtkIntArray> instanceArray;
  instanceArray->SetName("Instance");
  instanceArray->InsertNextValue(static_cast<int>(instance));
  result->GetFieldData()->AddArray(instanceArray);
  return result;
}

std::string
LowerCaseExtension(const std::string & fileName)
{
  const auto slash = fileName.find_last_of("/\\");
  const auto dot = fileName.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash))
  {
    return {};
  }
  std::string extension = fileName.substr(dot);
  std::transform(extension.begin(), extension.end(), extension.begin(), [](unsigned char c) {
    return static_cast<char>(std::tolower(c));
  });
  return extension;
}
/** Runs a VTK writer; VTK reports failures through error codes and its output window, ITK users expect exceptions. */
template <typename TWriter>
void
WriteOrThrow(TWriter * writer, const std::string & fileName)
{
  writer->SetFileName(fileName.c_str());
  if (writer->Write() == 0 || writer->GetErrorCode() != vtkErrorCode::NoError)
  {
    itkGenericExceptionMacro("UNetWriteSurface: could not write "
                             << fileName << ": " << vtkErrorCode::GetStringFromErrorCode(writer->GetErrorCode()));
  }
}
/** The surfaces of each connected piece of `label` (numbered by size, 1 the largest) in `indexSpace`, appended to
 * `surfaces`; only the label's box is searched. */
void
AddInstanceSurfaces(vtkImageData * indexSpace, long long label, const Extent & box, bool is3D,
                    const UNetLabelSurfaceOptions & options, vtkMatrix4x4 * indexToPhysical,
                    std::vector<UNetLabelSurface> & surfaces)
{
  vtkNew<vtkImageConstantPad> crop;
  crop->SetInputData(indexSpace);
  const Extent grown = Grown(box, is3D);
  crop->SetOutputWholeExtent(const_cast<int *>(grown.data()));
  crop->SetConstant(0.0);
  vtkNew<vtkImageConnectivityFilter> connectivity;
  connectivity->SetInputConnection(crop->GetOutputPort());
  connectivity->SetScalarRange(static_cast<double>(label), static_cast<double>(label));
  connectivity->SetExtractionModeToAllRegions();
  connectivity->SetLabelModeToSizeRank();
  connectivity->SetLabelScalarTypeToInt();
  connectivity->GenerateRegionExtentsOn();
  connectivity->Update();
  std::map<unsigned int, Extent> pieces;
  for (vtkIdType region = 0; region < connectivity->GetNumberOfExtractedRegions(); ++region)
  {
    Extent pieceBox;
    connectivity->GetExtractedRegionExtents()->GetTypedTuple(region, pieceBox.data());
    pieces.emplace(static_cast<unsigned int>(connectivity->GetExtractedRegionLabels()->GetValue(region)), pieceBox);
  }
  for (const auto & [instance, pieceBox] : pieces)
  {
    const auto contour = ContourInIndexSpace(connectivity->GetOutput(), pieceBox, instance, is3D);
    surfaces.push_back({ label, instance, FinishSurface(contour, indexToPhysical, is3D, options, label, instance) });
  }
}

/** `surface` written by a VTK XML PolyData writer (.vtp), its field data naming the coordinate system. */
void
WriteVTP(vtkPolyData * surface, const std::string & fileName)
{
  auto withSpace = vtkSmartPointer<vtkPolyData>::New();
  withSpace->ShallowCopy(surface);
  auto fieldData = vtkSmartPointer<vtkFieldData>::New();
  fieldData->DeepCopy(surface->GetFieldData()); // the caller's surface keeps its own field data
  vtkNew<vtkStringArray> spaceArray;
  spaceArray->SetName("SPACE");
  spaceArray->InsertNextValue("LPS");
  fieldData->AddArray(spaceArray);
  withSpace->SetFieldData(fieldData);
  vtkNew<vtkXMLPolyDataWriter> writer;
  writer->SetInputData(withSpace);
  WriteOrThrow(writer.Get(), fileName);
}

/** `surface` written as triangles, binary where the format has a binary form: .stl, .ply or .obj. */
void
WriteTriangles(vtkPolyData * surface, const std::string & fileName, const std::string & extension, const char * space,
               const std::string & header)
{
  if (surface->GetNumberOfPolys() == 0 && surface->GetNumberOfLines() > 0)
  {
    itkGenericExceptionMacro("UNetWriteSurface: " << fileName << ": " << extension
                                                  << " holds triangles; write contour lines as .vtp or .vtk");
  }
  if (extension == ".stl")
  {
    vtkNew<vtkSTLWriter> writer;
    writer->SetInputData(surface);
    writer->SetFileTypeToBinary();
    writer->SetHeader(header.c_str());
    WriteOrThrow(writer.Get(), fileName);
  }
  else if (extension == ".ply")
  {
    vtkNew<vtkPLYWriter> writer;
    writer->SetInputData(surface);
    writer->SetFileTypeToBinary();
    writer->AddComment(space);
    WriteOrThrow(writer.Get(), fileName);
  }
  else
  {
    vtkNew<vtkOBJWriter> writer;
    writer->SetInputData(surface);
    WriteOrThrow(writer.Get(), fileName);
  }
}
} // namespace

std::vector<UNetLabelSurface>
UNetExtractLabelSurfaces(vtkImageData * labels, const UNetLabelSurfaceOptions & options)
{
  if (labels == nullptr || labels->GetPointData()->GetScalars() == nullptr)
  {
    itkGenericExceptionMacro("UNetExtractLabelSurfaces: the label map is null or has no scalars");
  }
  vtkDataArray * scalars = labels->GetPointData()->GetScalars();
  if (scalars->GetNumberOfComponents() != 1)
  {
    itkGenericExceptionMacro("UNetExtractLabelSurfaces: a label map has one component per voxel, this one "
                             << scalars->GetNumberOfComponents());
  }
  if (options.SmoothingIterations < 0 || !(options.PassBand >= 0.0 && options.PassBand <= 2.0))
  {
    itkGenericExceptionMacro("UNetExtractLabelSurfaces: smoothing needs iterations >= 0 and a pass band in [0, 2], not "
                             << options.SmoothingIterations << " and " << options.PassBand);
  }
  int extent[6];
  labels->GetExtent(extent);
  const bool is3D = extent[5] > extent[4];

  std::map<long long, Extent> boxes;
  switch (scalars->GetDataType())
  {
    vtkTemplateMacro(CollectLabelExtents(static_cast<const VTK_TT *>(scalars->GetVoidPointer(0)), extent, boxes));
    default:
      itkGenericExceptionMacro("UNetExtractLabelSurfaces: labels of VTK type " << scalars->GetDataTypeAsString()
                                                                               << " are not supported");
  }

  const vtkSmartPointer<vtkImageData> indexSpace = UNetIndexSpaceImage(labels);
  vtkMatrix4x4 * const                indexToPhysical = labels->GetIndexToPhysicalMatrix();
  std::vector<UNetLabelSurface>       surfaces;
  for (const auto & [label, box] : boxes)
  {
    if (!options.SeparateInstances)
    {
      const auto contour = ContourInIndexSpace(indexSpace, box, static_cast<double>(label), is3D);
      surfaces.push_back({ label, 0, FinishSurface(contour, indexToPhysical, is3D, options, label, 0) });
      continue;
    }
    AddInstanceSurfaces(indexSpace, label, box, is3D, options, indexToPhysical, surfaces);
  }
  return surfaces;
}

void
UNetWriteSurface(vtkPolyData * surface, const std::string & fileName)
{
  if (surface == nullptr)
  {
    itkGenericExceptionMacro("UNetWriteSurface: the surface is null");
  }
  const std::string extension = LowerCaseExtension(fileName);
  // 3D Slicer's way of naming the coordinate system in model files.
  const char * const space = "SPACE=LPS";
  const std::string  header = std::string("UNetSegmentation surface. ") + space;
  if (extension == ".vtp")
  {
    WriteVTP(surface, fileName);
  }
  else if (extension == ".vtk")
  {
    vtkNew<vtkPolyDataWriter> writer;
    writer->SetInputData(surface);
    writer->SetFileVersion(vtkDataWriter::VTK_LEGACY_READER_VERSION_4_2); // readable by VTK < 9 and most others
    writer->SetFileTypeToBinary();
    writer->SetHeader(header.c_str());
    WriteOrThrow(writer.Get(), fileName);
  }
  else if (extension == ".stl" || extension == ".ply" || extension == ".obj")
  {
    WriteTriangles(surface, fileName, extension, space, header);
  }
  else
  {
    itkGenericExceptionMacro("UNetWriteSurface: " << fileName
                                                  << ": unknown surface file extension (.vtp, .vtk, .stl, .ply, .obj)");
  }
}

std::string
UNetSurfaceFileName(const std::string & fileName, const UNetLabelSurface & surface)
{
  std::ostringstream suffix;
  suffix << '-' << surface.Label;
  if (surface.Instance > 0)
  {
    suffix << '-' << surface.Instance;
  }
  const std::string extension = LowerCaseExtension(fileName);
  const std::string stem = fileName.substr(0, fileName.size() - extension.size());
  return stem + suffix.str() + fileName.substr(stem.size());
}

} // namespace itk
