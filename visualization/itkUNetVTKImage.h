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
#ifndef itkUNetVTKImage_h
#define itkUNetVTKImage_h

#include "itkImage.h"
#include "itkMacro.h"

#include <vtkDataArray.h>
#include <vtkImageData.h>
#include <vtkPointData.h>
#include <vtkSmartPointer.h>
#include <vtkTypeTraits.h>

#include <algorithm>
#include <type_traits>

namespace itk
{

/** \brief The ITK image's buffered pixels as a vtkImageData, in the same physical space.
 *
 * This is the one place where the programs' ITK images enter VTK. The pixels are copied (the VTK image owns its
 * memory and outlives the ITK pipeline). VTK's extent is ITK's buffered index range, and origin, spacing and direction
 * are ITK's, so that VTK's index-to-physical mapping (vtkImageData::TransformIndexToPhysicalPoint) equals ITK's
 * TransformIndexToPhysicalPoint: LPS, as ITK uses. A 2-D image becomes one slice at z = 0.
 *
 * ITK's own bridge, itk::ImageToVTKImageFilter (ITKVtkGlue), is not used: ITK 5.2's ITKVtkGlue calls
 * find_package(VTK) without components, and Debian's VTK 9.1 then requires Qt5 (docs/visualization.md).
 *
 * \ingroup UNetSegmentation
 */
template <typename TImage>
vtkSmartPointer<vtkImageData>
UNetImageToVTK(const TImage * image)
{
  constexpr unsigned int Dimension = TImage::ImageDimension;
  using PixelType = typename TImage::PixelType;
  static_assert(Dimension == 2 || Dimension == 3, "VTK images are 2-D or 3-D");
  static_assert(std::is_arithmetic<PixelType>::value, "UNetImageToVTK takes scalar images");
  if (image == nullptr)
  {
    itkGenericExceptionMacro("UNetImageToVTK: the image is null");
  }
  const auto region = image->GetBufferedRegion();
  if (region.GetNumberOfPixels() == 0 || image->GetBufferPointer() == nullptr)
  {
    itkGenericExceptionMacro("UNetImageToVTK: the image has no buffered pixels (update it first)");
  }

  int    extent[6] = { 0, 0, 0, 0, 0, 0 };
  double origin[3] = { 0.0, 0.0, 0.0 };
  double spacing[3] = { 1.0, 1.0, 1.0 };
  double direction[9] = { 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0 }; // row-major, as vtkMatrix3x3
  for (unsigned int row = 0; row < Dimension; ++row)
  {
    extent[2 * row] = static_cast<int>(region.GetIndex(row));
    extent[2 * row + 1] = static_cast<int>(region.GetIndex(row) + static_cast<IndexValueType>(region.GetSize(row)) - 1);
    origin[row] = image->GetOrigin()[row];
    spacing[row] = image->GetSpacing()[row];
    for (unsigned int column = 0; column < Dimension; ++column)
    {
      direction[3 * row + column] = image->GetDirection()[row][column];
    }
  }

  auto result = vtkSmartPointer<vtkImageData>::New();
  result->SetExtent(extent);
  result->SetOrigin(origin);
  result->SetSpacing(spacing);
  result->SetDirectionMatrix(direction);
  // ITK and VTK both store x fastest, then y, then z.
  const auto pixels =
    vtkSmartPointer<vtkDataArray>::Take(vtkDataArray::CreateDataArray(vtkTypeTraits<PixelType>::VTKTypeID()));
  pixels->SetNumberOfComponents(1);
  pixels->SetNumberOfTuples(static_cast<vtkIdType>(region.GetNumberOfPixels()));
  pixels->SetName("Pixels");
  std::copy_n(
    image->GetBufferPointer(), region.GetNumberOfPixels(), static_cast<PixelType *>(pixels->GetVoidPointer(0)));
  result->GetPointData()->SetScalars(pixels);
  return result;
}

/** \brief The same pixels (shared, not copied) and extent with origin 0, spacing 1 and no direction: index space.
 *
 * VTK 9.1's imaging filters drop an image's direction (vtkImageConstantPad does), and its image actors may not honour
 * it, so surfaces, contours and image slices are made in index space and put into physical space with the source
 * image's index-to-physical matrix (vtkImageData::GetIndexToPhysicalMatrix), as 3D Slicer does.
 *
 * \ingroup UNetSegmentation
 */
inline vtkSmartPointer<vtkImageData>
UNetIndexSpaceImage(vtkImageData * image)
{
  if (image == nullptr || image->GetPointData()->GetScalars() == nullptr)
  {
    itkGenericExceptionMacro("UNetIndexSpaceImage: the image is null or has no scalars");
  }
  auto result = vtkSmartPointer<vtkImageData>::New();
  result->SetExtent(image->GetExtent());
  result->GetPointData()->SetScalars(image->GetPointData()->GetScalars());
  return result;
}

} // namespace itk

#endif // itkUNetVTKImage_h
