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
#include <string>

int
main(int argc, char * argv[])
{
  if (argc < 3)
  {
    std::cerr << "Usage: " << argv[0] << " labels picture.png [--image image] [--size WIDTHxHEIGHT]" << std::endl;
    return EXIT_FAILURE;
  }
  std::string imageFile;
  int         width = 0;
  int         height = 0;
  try
  {
    for (int a = 3; a < argc; ++a)
    {
      const std::string option = argv[a];
      if (option == "--image" && a + 1 < argc)
      {
        imageFile = argv[++a];
      }
      else if (option == "--size" && a + 1 < argc)
      {
        const std::string size = argv[++a];
        const auto        x = size.find('x');
        if (x == std::string::npos)
        {
          std::cerr << "Error: --size takes WIDTHxHEIGHT, e.g. 640x480, not " << size << std::endl;
          return EXIT_FAILURE;
        }
        width = std::stoi(size.substr(0, x));
        height = std::stoi(size.substr(x + 1));
      }
      else
      {
        std::cerr << "Unknown or incomplete option: " << option << std::endl;
        return EXIT_FAILURE;
      }
    }
    // Fail before reading anything when there is no display to render with.
    itk::UNetRequireDisplay();

    // Read as 3-D, whatever the file's dimension: a 2-D file becomes one slice.
    const auto labels = itk::UNetImageToVTK(itk::ReadImage<itk::Image<int, 3>>(argv[1]).GetPointer());
    int        extent[6];
    labels->GetExtent(extent);
    if (extent[5] > extent[4])
    {
      if (!imageFile.empty())
      {
        std::cerr << "Error: --image goes under a 2-D label map's contours; " << argv[1] << " is 3-D" << std::endl;
        return EXIT_FAILURE;
      }
      itk::UNetRenderSurfaces(
        itk::UNetExtractLabelSurfaces(labels), width > 0 ? width : 640, height > 0 ? height : 480, argv[2]);
    }
    else
    {
      vtkSmartPointer<vtkImageData> image;
      if (!imageFile.empty())
      {
        image = itk::UNetImageToVTK(itk::ReadImage<itk::Image<float, 3>>(imageFile).GetPointer());
      }
      int shown[6];
      (image != nullptr ? image : labels)->GetExtent(shown);
      itk::UNetRenderLabelContours(labels,
                                   image,
                                   width > 0 ? width : shown[1] - shown[0] + 1,
                                   height > 0 ? height : shown[3] - shown[2] + 1,
                                   argv[2]);
    }
    std::cout << "wrote " << argv[2] << std::endl;
  }
  catch (const itk::ExceptionObject & error)
  {
    std::cerr << "Error: " << error.GetDescription() << std::endl;
    return EXIT_FAILURE;
  }
  catch (const std::logic_error & error) // std::stoi
  {
    std::cerr << "Error: a number was expected: " << error.what() << std::endl;
    return EXIT_FAILURE;
  }
  return EXIT_SUCCESS;
}
