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

// A picture (PNG) of a segmentation: for a 3-D label map, its surfaces coloured by class, from a fixed camera
// (front view, turned 30 degrees and raised 20); for a 2-D label map, its contours coloured by class over the image
// it segments, as an image viewer shows it (row 0 at the top).
//
//   UNetRenderLabels labels picture.png [--image image.png] [--size WIDTHxHEIGHT]
//
// Default size: the image's (or the 2-D label map's) size in pixels, 640x480 for surfaces. Renders offscreen
// through X: on a machine without a display, run it under xvfb-run (Debian's VTK 9.1 has no OSMesa or EGL):
//
//   xvfb-run -a -s "-screen 0 1280x1024x24" UNetRenderLabels labels.png picture.png --image image.png

#include "itkImageFileReader.h"
#include "itkUNetLabelPictures.h"
#include "itkUNetVTKImage.h"

#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>

namespace
{
/** The options after the two file names. */
struct Options
{
  std::string ImageFile;
  int         Width{ 0 };
  int         Height{ 0 };
};

/** Reads --image and --size; throws std::invalid_argument saying what is wrong. */
Options
ParseOptions(int argc, char * argv[])
{
  Options options;
  for (int a = 3; a < argc; ++a)
  {
    const std::string option = argv[a];
    if (option == "--image" && a + 1 < argc)
    {
      options.ImageFile = argv[++a];
    }
    else if (option == "--size" && a + 1 < argc)
    {
      const std::string size = argv[++a];
      const auto        x = size.find('x');
      if (x == std::string::npos)
      {
        throw std::invalid_argument("--size takes WIDTHxHEIGHT, e.g. 640x480, not " + size);
      }
      try
      {
        options.Width = std::stoi(size.substr(0, x));
        options.Height = std::stoi(size.substr(x + 1));
      }
      catch (const std::logic_error &) // std::stoi: not a number, or out of range
      {
        throw std::invalid_argument("--size takes two numbers, WIDTHxHEIGHT, not " + size);
      }
    }
    else
    {
      throw std::invalid_argument("unknown or incomplete option: " + option);
    }
  }
  return options;
}

/** Draws `labelsFile`: a 3-D label map's surfaces, or a 2-D one's contours (over the image of --image, if given). */
void
Render(const std::string & labelsFile, const std::string & picture, const Options & options)
{
  // Read as 3-D, whatever the file's dimension: a 2-D file becomes one slice.
  const auto labels = itk::UNetImageToVTK(itk::ReadImage<itk::Image<int, 3>>(labelsFile).GetPointer());
  int        extent[6];
  labels->GetExtent(extent);
  if (extent[5] > extent[4])
  {
    if (!options.ImageFile.empty())
    {
      throw std::invalid_argument("--image goes under a 2-D label map's contours; " + labelsFile + " is 3-D");
    }
    itk::UNetRenderSurfaces(itk::UNetExtractLabelSurfaces(labels),
                            options.Width > 0 ? options.Width : 640,
                            options.Height > 0 ? options.Height : 480,
                            picture);
    return;
  }
  vtkSmartPointer<vtkImageData> image;
  if (!options.ImageFile.empty())
  {
    image = itk::UNetImageToVTK(itk::ReadImage<itk::Image<float, 3>>(options.ImageFile).GetPointer());
  }
  int shown[6];
  (image != nullptr ? image : labels)->GetExtent(shown);
  itk::UNetRenderLabelContours(labels,
                               image,
                               options.Width > 0 ? options.Width : shown[1] - shown[0] + 1,
                               options.Height > 0 ? options.Height : shown[3] - shown[2] + 1,
                               picture);
}
} // namespace

int
main(int argc, char * argv[])
{
  if (argc < 3)
  {
    std::cerr << "Usage: " << argv[0] << " labels picture.png [--image image] [--size WIDTHxHEIGHT]" << std::endl;
    return EXIT_FAILURE;
  }
  try
  {
    const Options options = ParseOptions(argc, argv);
    // Fail before reading anything when there is no display to render with.
    itk::UNetRequireDisplay();
    Render(argv[1], argv[2], options);
    std::cout << "wrote " << argv[2] << std::endl;
  }
  catch (const itk::ExceptionObject & error)
  {
    std::cerr << "Error: " << error.GetDescription() << std::endl;
    return EXIT_FAILURE;
  }
  catch (const std::invalid_argument & error) // the options
  {
    std::cerr << "Error: " << error.what() << std::endl;
    return EXIT_FAILURE;
  }
  return EXIT_SUCCESS;
}
