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
#include "itkUNetLabelPictures.h"

#include "itkImageFileReader.h"
#include "itkImageRegionConstIterator.h"
#include "itkImageRegionIterator.h"
#include "itkRGBPixel.h"
#include "itkUNetVTKImage.h"

#include "UNetVisualizationTestHelpers.h"
#include "gtest/gtest.h"

#include <cstdlib>
#include <string>

using namespace UNetVisualizationTest;

namespace
{
using PictureType = itk::Image<itk::RGBPixel<unsigned char>, 2>;

std::string
OutputPath(const std::string & name)
{
  return std::string(UNET_TEST_OUTPUT_DIR) + "/" + name;
}

/** The picture as written, read back with ITK's PNG reader (not VTK's, which wrote it). */
PictureType::Pointer
ReadPicture(const std::string & fileName)
{
  return itk::ReadImage<PictureType>(fileName);
}

bool
Near(const PictureType::PixelType & pixel, const std::array<double, 3> & color, int tolerance)
{
  for (unsigned int c = 0; c < 3; ++c)
  {
    if (std::abs(static_cast<int>(pixel[c]) - static_cast<int>(std::lround(255.0 * color[c]))) > tolerance)
    {
      return false;
    }
  }
  return true;
}

/** The grey an image value is shown in: the image's range of values spans black to white. */
std::array<double, 3>
Shown(double value, double minimum, double maximum)
{
  const double v = (value - minimum) / (maximum - minimum);
  return { v, v, v };
}

/** Label 1 is red, label 2 green: lit, their pixels keep the hue. */
bool
Reddish(const PictureType::PixelType & pixel)
{
  return pixel[0] > 60 && pixel[0] > 2 * pixel[1] && pixel[0] > 2 * pixel[2];
}
bool
Greenish(const PictureType::PixelType & pixel)
{
  return pixel[1] > 60 && pixel[1] > 1.5 * pixel[0] && pixel[1] > 1.5 * pixel[2];
}

LabelImageType::Pointer
TwoBalls()
{
  LabelImageType::SpacingType spacing;
  spacing[0] = 0.6;
  spacing[1] = 0.8;
  spacing[2] = 1.0;
  auto labels = MakeGridAround(PointType{ { 0.0, 0.0, 0.0 } }, 14.0, spacing, MakeDirection(20.0, 10.0, false));
  PaintBall(labels, PointType{ { -6.0, 0.0, 0.0 } }, 5.0, 1);
  PaintBall(labels, PointType{ { 6.0, 0.0, 2.0 } }, 4.0, 2);
  return labels;
}
} // namespace

TEST(UNetLabelPictures, SurfacePictureHasTheSizeAskedForAndShowsTheClassesInTheirColours)
{
  const auto labels = TwoBalls();
  const auto surfaces = itk::UNetExtractLabelSurfaces(itk::UNetImageToVTK(labels.GetPointer()));
  ASSERT_EQ(surfaces.size(), 2u);
  const std::string fileName = OutputPath("two-balls.png");
  itk::UNetRenderSurfaces(surfaces, 160, 120, fileName);
  const auto picture = ReadPicture(fileName);
  const auto size = picture->GetLargestPossibleRegion().GetSize();
  EXPECT_EQ(size[0], 160u);
  EXPECT_EQ(size[1], 120u);

  // The background's colour in the corners; pixels of each class's colour where the balls are.
  const PictureType::PixelType corner = picture->GetPixel({ { 0, 0 } });
  EXPECT_TRUE(Near(corner, { 0.10, 0.11, 0.14 }, 1)) << corner;
  unsigned int background = 0, red = 0, green = 0;
  for (itk::ImageRegionConstIterator<PictureType> it(picture, picture->GetLargestPossibleRegion()); !it.IsAtEnd(); ++it)
  {
    background += it.Get() == corner;
    red += Reddish(it.Get());
    green += Greenish(it.Get());
  }
  std::cout << "background " << background << ", red " << red << ", green " << green << " of " << 160 * 120 << " pixels"
            << std::endl;
  EXPECT_GT(red, 500u);
  EXPECT_GT(green, 300u);
  EXPECT_GT(red, green); // the larger ball
  EXPECT_GT(background, 160u * 120u / 4);
}

TEST(UNetLabelPictures, ContourPictureShowsTheImagePixelForPixelAsAnImageViewerDoes)
{
  // A 64 x 48 horizontal ramp (0, 4, ..., 252) with a label rectangle over pixels x 16..39, y 10..27, drawn at the
  // image's size: picture pixel (x, y) is image pixel (x, y), row 0 at the top.
  using ImageType = itk::Image<unsigned char, 2>;
  auto image = ImageType::New();
  image->SetRegions(ImageType::SizeType{ { 64, 48 } });
  image->Allocate();
  for (itk::ImageRegionIteratorWithIndex<ImageType> it(image, image->GetLargestPossibleRegion()); !it.IsAtEnd(); ++it)
  {
    it.Set(static_cast<unsigned char>(4 * it.GetIndex()[0]));
  }
  auto labels = ImageType::New();
  labels->SetRegions(image->GetLargestPossibleRegion());
  labels->Allocate(true);
  for (itk::ImageRegionIterator<ImageType> it(labels, ImageType::RegionType({ { 16, 10 } }, { { 24, 18 } }));
       !it.IsAtEnd();
       ++it)
  {
    it.Set(1);
  }
  const std::string fileName = OutputPath("contours.png");
  itk::UNetRenderLabelContours(
    itk::UNetImageToVTK(labels.GetPointer()), itk::UNetImageToVTK(image.GetPointer()), 64, 48, fileName);
  const auto picture = ReadPicture(fileName);
  ASSERT_EQ(picture->GetLargestPossibleRegion().GetSize(), image->GetLargestPossibleRegion().GetSize());

  const auto grey = [&](int x, int y) { return Shown(image->GetPixel({ { x, y } }), 0.0, 252.0); };
  const auto red = itk::UNetLabelColor(1);
  // Inside and outside the rectangle, away from its outline: the image's grey values.
  for (const auto & xy : { std::array<int, 2>{ 27, 18 }, { 20, 14 }, { 35, 24 }, { 5, 5 }, { 50, 40 }, { 27, 40 } })
  {
    EXPECT_TRUE(Near(picture->GetPixel({ { xy[0], xy[1] } }), grey(xy[0], xy[1]), 2))
      << "at " << xy[0] << ", " << xy[1] << ": " << picture->GetPixel({ { xy[0], xy[1] } });
  }
  // The outline, in the label's colour, along the rectangle's edges (between pixels 15 and 16, 39 and 40 in x; 9 and
  // 10, 27 and 28 in y); upside down, the top edge would lie between rows 20 and 21.
  const auto onOutline = [&](int x0, int y0, int x1, int y1) {
    return Near(picture->GetPixel({ { x0, y0 } }), red, 40) || Near(picture->GetPixel({ { x1, y1 } }), red, 40);
  };
  EXPECT_TRUE(onOutline(15, 18, 16, 18)) << "left edge";
  EXPECT_TRUE(onOutline(39, 18, 40, 18)) << "right edge";
  EXPECT_TRUE(onOutline(27, 9, 27, 10)) << "top edge";
  EXPECT_TRUE(onOutline(27, 27, 27, 28)) << "bottom edge";
  EXPECT_FALSE(onOutline(27, 20, 27, 21)) << "the picture is upside down";
}

TEST(UNetLabelPictures, ContourPictureIsInPhysicalSpace)
{
  // Pixels twice as wide as high: a 32 x 48 image shown at 64 x 48 has each image pixel two picture pixels wide.
  using ImageType = itk::Image<unsigned char, 2>;
  auto image = ImageType::New();
  image->SetRegions(ImageType::SizeType{ { 32, 48 } });
  ImageType::SpacingType spacing;
  spacing[0] = 2.0;
  spacing[1] = 1.0;
  image->SetSpacing(spacing);
  image->Allocate();
  for (itk::ImageRegionIteratorWithIndex<ImageType> it(image, image->GetLargestPossibleRegion()); !it.IsAtEnd(); ++it)
  {
    it.Set(static_cast<unsigned char>(8 * it.GetIndex()[0]));
  }
  auto labels = ImageType::New();
  labels->CopyInformation(image);
  labels->SetRegions(image->GetLargestPossibleRegion());
  labels->Allocate(true);
  labels->SetPixel({ { 10, 10 } }, 2);
  const std::string fileName = OutputPath("contours-anisotropic.png");
  itk::UNetRenderLabelContours(
    itk::UNetImageToVTK(labels.GetPointer()), itk::UNetImageToVTK(image.GetPointer()), 64, 48, fileName);
  const auto picture = ReadPicture(fileName);
  for (const int x : { 2, 3, 40, 41, 62, 63 })
  {
    EXPECT_TRUE(Near(picture->GetPixel({ { x, 40 } }), Shown(8 * (x / 2), 0.0, 248.0), 2)) << x;
  }
  // The labelled pixel covers picture pixels 20-21 x 10; its outline surrounds them in green.
  const auto green = itk::UNetLabelColor(2);
  EXPECT_TRUE(Near(picture->GetPixel({ { 19, 10 } }), green, 40) || Near(picture->GetPixel({ { 20, 10 } }), green, 40));
}

TEST(UNetLabelPictures, RejectsBadSizesAndInputs)
{
  const auto labels = TwoBalls();
  const auto surfaces = itk::UNetExtractLabelSurfaces(itk::UNetImageToVTK(labels.GetPointer()));
  EXPECT_THROW(itk::UNetRenderSurfaces(surfaces, 0, 100, OutputPath("bad.png")), itk::ExceptionObject);
  EXPECT_THROW(itk::UNetRenderSurfaces(surfaces, 100, 20000, OutputPath("bad.png")), itk::ExceptionObject);
  EXPECT_THROW(itk::UNetRenderLabelContours(nullptr, nullptr, 10, 10, OutputPath("bad.png")), itk::ExceptionObject);
  // A 3-D label map has surfaces, not contours.
  EXPECT_THROW(
    itk::UNetRenderLabelContours(itk::UNetImageToVTK(labels.GetPointer()), nullptr, 10, 10, OutputPath("bad.png")),
    itk::ExceptionObject);
  EXPECT_THROW(itk::UNetRenderSurfaces(surfaces, 10, 10, OutputPath("no-such-directory/bad.png")),
               itk::ExceptionObject);
}

TEST(UNetLabelPictures, WithoutADisplayThrowsAndSaysWhatToDo)
{
  const char *      display = std::getenv("DISPLAY");
  const std::string saved = display != nullptr ? display : "";
  unsetenv("DISPLAY");
  try
  {
    itk::UNetRequireDisplay();
    ADD_FAILURE() << "no exception without a display";
  }
  catch (const itk::ExceptionObject & error)
  {
    EXPECT_NE(std::string(error.GetDescription()).find("xvfb-run"), std::string::npos) << error.GetDescription();
  }
  const auto surfaces = itk::UNetExtractLabelSurfaces(itk::UNetImageToVTK(TwoBalls().GetPointer()));
  EXPECT_THROW(itk::UNetRenderSurfaces(surfaces, 10, 10, OutputPath("no-display.png")), itk::ExceptionObject);
  if (!saved.empty())
  {
    setenv("DISPLAY", saved.c_str(), 1);
  }
}
