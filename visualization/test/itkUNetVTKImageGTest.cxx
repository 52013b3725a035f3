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
#include "itkUNetVTKImage.h"

#include "itkImageRegionConstIteratorWithIndex.h"
#include "itkImageRegionIterator.h"

#include "gtest/gtest.h"

#include <vtkMatrix3x3.h>

#include <cmath>
#include <random>

namespace
{
/** An image with a start index other than 0, anisotropic spacing, an origin, a rotation and random pixels. */
template <typename TImage>
typename TImage::Pointer
MakeImage(unsigned int seed)
{
  constexpr unsigned int       D = TImage::ImageDimension;
  auto                         image = TImage::New();
  typename TImage::IndexType   start;
  typename TImage::SizeType    size;
  typename TImage::SpacingType spacing;
  typename TImage::PointType   origin;
  for (unsigned int axis = 0; axis < D; ++axis)
  {
    start[axis] = 3 - 5 * static_cast<int>(axis);
    size[axis] = 4 + axis;
    spacing[axis] = 0.5 + 0.375 * axis;
    origin[axis] = -10.0 + 7.5 * axis;
  }
  image->SetRegions(typename TImage::RegionType(start, size));
  image->SetSpacing(spacing);
  image->SetOrigin(origin);
  typename TImage::DirectionType direction; // a rotation by 30 degrees in the x-y plane
  direction.SetIdentity();
  const double angle = 30.0 * 3.14159265358979 / 180.0;
  direction[0][0] = std::cos(angle);
  direction[0][1] = -std::sin(angle);
  direction[1][0] = std::sin(angle);
  direction[1][1] = std::cos(angle);
  image->SetDirection(direction);
  image->Allocate();
  std::mt19937                       generator(seed);
  std::uniform_int_distribution<int> distribution(0, 200);
  for (itk::ImageRegionIterator<TImage> it(image, image->GetLargestPossibleRegion()); !it.IsAtEnd(); ++it)
  {
    it.Set(static_cast<typename TImage::PixelType>(distribution(generator)) / 2);
  }
  return image;
}

/** Every pixel: the same value at the same index, and VTK's index-to-physical mapping equals ITK's. */
template <typename TImage>
void
ExpectSamePixelsAndPlaces(const TImage * image, vtkImageData * vtkImage)
{
  constexpr unsigned int D = TImage::ImageDimension;
  for (itk::ImageRegionConstIteratorWithIndex<TImage> it(image, image->GetBufferedRegion()); !it.IsAtEnd(); ++it)
  {
    const auto index = it.GetIndex();
    int        ijk[3] = { 0, 0, 0 };
    for (unsigned int axis = 0; axis < D; ++axis)
    {
      ijk[axis] = static_cast<int>(index[axis]);
    }
    EXPECT_EQ(vtkImage->GetScalarComponentAsDouble(ijk[0], ijk[1], ijk[2], 0), static_cast<double>(it.Get()));
    typename TImage::PointType itkPoint;
    image->TransformIndexToPhysicalPoint(index, itkPoint);
    double vtkPoint[3];
    vtkImage->TransformIndexToPhysicalPoint(ijk, vtkPoint);
    for (unsigned int axis = 0; axis < D; ++axis)
    {
      EXPECT_NEAR(vtkPoint[axis], itkPoint[axis], 1e-12);
    }
    if (D == 2)
    {
      EXPECT_EQ(vtkPoint[2], 0.0);
    }
  }
}
} // namespace

TEST(UNetVTKImage, ThreeDimensionalImageKeepsPixelsAndPhysicalSpace)
{
  using ImageType = itk::Image<float, 3>;
  const auto image = MakeImage<ImageType>(1);
  const auto vtkImage = itk::UNetImageToVTK(image.GetPointer());
  int        extent[6];
  vtkImage->GetExtent(extent);
  const auto region = image->GetBufferedRegion();
  for (unsigned int axis = 0; axis < 3; ++axis)
  {
    EXPECT_EQ(extent[2 * axis], region.GetIndex(axis));
    EXPECT_EQ(extent[2 * axis + 1], region.GetIndex(axis) + static_cast<int>(region.GetSize(axis)) - 1);
  }
  EXPECT_EQ(vtkImage->GetScalarType(), VTK_FLOAT);
  EXPECT_EQ(vtkImage->GetNumberOfScalarComponents(), 1);
  ExpectSamePixelsAndPlaces(image.GetPointer(), vtkImage);
}

TEST(UNetVTKImage, TwoDimensionalImageBecomesOneSliceAtZeroInPhysicalSpace)
{
  using ImageType = itk::Image<unsigned char, 2>;
  const auto image = MakeImage<ImageType>(2);
  const auto vtkImage = itk::UNetImageToVTK(image.GetPointer());
  int        extent[6];
  vtkImage->GetExtent(extent);
  EXPECT_EQ(extent[4], 0);
  EXPECT_EQ(extent[5], 0);
  EXPECT_EQ(vtkImage->GetScalarType(), VTK_UNSIGNED_CHAR);
  ExpectSamePixelsAndPlaces(image.GetPointer(), vtkImage);
}

TEST(UNetVTKImage, CopiesThePixels)
{
  using ImageType = itk::Image<short, 3>;
  const auto image = MakeImage<ImageType>(3);
  const auto vtkImage = itk::UNetImageToVTK(image.GetPointer());
  const auto index = image->GetBufferedRegion().GetIndex();
  const auto before = image->GetPixel(index);
  image->FillBuffer(-7);
  EXPECT_EQ(vtkImage->GetScalarComponentAsDouble(index[0], index[1], index[2], 0), before);
}

TEST(UNetVTKImage, IndexSpaceImageSharesThePixels)
{
  using ImageType = itk::Image<float, 3>;
  const auto image = MakeImage<ImageType>(4);
  const auto vtkImage = itk::UNetImageToVTK(image.GetPointer());
  const auto indexSpace = itk::UNetIndexSpaceImage(vtkImage);
  EXPECT_EQ(indexSpace->GetPointData()->GetScalars(), vtkImage->GetPointData()->GetScalars());
  int a[6], b[6];
  vtkImage->GetExtent(a);
  indexSpace->GetExtent(b);
  EXPECT_TRUE(std::equal(a, a + 6, b));
  const int ijk[3] = { a[1], a[2], a[5] };
  double    point[3];
  indexSpace->TransformIndexToPhysicalPoint(ijk, point);
  for (int axis = 0; axis < 3; ++axis)
  {
    EXPECT_DOUBLE_EQ(point[axis], ijk[axis]);
  }
}

TEST(UNetVTKImage, RejectsNullAndUnbufferedImages)
{
  using ImageType = itk::Image<float, 3>;
  EXPECT_THROW(itk::UNetImageToVTK(static_cast<const ImageType *>(nullptr)), itk::ExceptionObject);
  auto unbuffered = ImageType::New();
  EXPECT_THROW(itk::UNetImageToVTK(unbuffered.GetPointer()), itk::ExceptionObject);
  EXPECT_THROW(itk::UNetIndexSpaceImage(nullptr), itk::ExceptionObject);
}
