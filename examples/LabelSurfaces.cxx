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

// Writes one closed, smoothed surface per class of a 3-D label map (a segmentation's label output, or any label map
// file ITK reads: .nrrd, .nii.gz, .mha, ...), in physical coordinates (LPS, as ITK and 3D Slicer's files use).
//
//   UNetLabelSurfaces labels.nrrd surfaces.vtp [--instances] [--iterations N] [--pass-band B]
//
// Every label but 0 gets a surface, written to the output name with "-<label>" before the extension
// (surfaces-1.vtp, surfaces-2.vtp, ...); --instances writes one surface per face-connected piece of each class
// instead, "-<label>-<k>" for the k-th largest. The extension chooses the format: .vtp, .vtk, .stl, .ply or .obj.
// --iterations and --pass-band set the windowed sinc smoothing (default 20 and 0.01, as 3D Slicer; 0 iterations:
// the voxels' boundary unsmoothed). A 2-D label map gives contour lines (.vtp or .vtk).

#include "itkImageFileReader.h"
#include "itkUNetLabelSurfaces.h"
#include "itkUNetVTKImage.h"

#include <vtkMassProperties.h>
#include <vtkNew.h>

#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>

namespace
{
/** Reads --instances, --iterations and --pass-band; throws std::invalid_argument saying what is wrong. */
itk::UNetLabelSurfaceOptions
ParseOptions(int argc, char * argv[])
{
  itk::UNetLabelSurfaceOptions options;
  for (int a = 3; a < argc; ++a)
  {
    const std::string option = argv[a];
    try
    {
      if (option == "--instances")
      {
        options.SeparateInstances = true;
      }
      else if (option == "--iterations" && a + 1 < argc)
      {
        options.SmoothingIterations = std::stoi(argv[++a]);
      }
      else if (option == "--pass-band" && a + 1 < argc)
      {
        options.PassBand = std::stod(argv[++a]);
      }
      else
      {
        throw std::invalid_argument("unknown or incomplete option: " + option);
      }
    }
    catch (const std::out_of_range &)
    {
      throw std::invalid_argument(option + " takes a number in range, not " + argv[a]);
    }
    catch (const std::invalid_argument & error)
    {
      throw std::invalid_argument(option == argv[a] ? error.what() : option + " takes a number, not " + argv[a]);
    }
  }
  return options;
}

/** One line about `surface`: its label and piece, its triangles with area and volume or its contour segments. */
void
Describe(const itk::UNetLabelSurface & surface, const std::string & fileName)
{
  std::cout << "label " << surface.Label;
  if (surface.Instance > 0)
  {
    std::cout << " piece " << surface.Instance;
  }
  if (surface.Surface->GetNumberOfPolys() > 0)
  {
    vtkNew<vtkMassProperties> measure;
    measure->SetInputData(surface.Surface);
    measure->Update();
    std::cout << ": " << surface.Surface->GetNumberOfPolys() << " triangles, area " << measure->GetSurfaceArea()
              << ", volume " << measure->GetVolume();
  }
  else
  {
    std::cout << ": " << surface.Surface->GetNumberOfLines() << " contour segments";
  }
  std::cout << " -> " << fileName << std::endl;
}
} // namespace

int
main(int argc, char * argv[])
{
  if (argc < 3)
  {
    std::cerr << "Usage: " << argv[0] << " labels output.vtp|.vtk|.stl|.ply|.obj [--instances] [--iterations N]"
              << " [--pass-band B]" << std::endl;
    return EXIT_FAILURE;
  }
  try
  {
    const itk::UNetLabelSurfaceOptions options = ParseOptions(argc, argv);
    // Read as 3-D, whatever the file's dimension (a 2-D file becomes one slice), and as int, whatever its type:
    // VTK's contouring and connectivity filters take any type.
    const auto labels = itk::ReadImage<itk::Image<int, 3>>(argv[1]);
    const auto surfaces = itk::UNetExtractLabelSurfaces(itk::UNetImageToVTK(labels.GetPointer()), options);
    if (surfaces.empty())
    {
      std::cout << argv[1] << " has no label other than 0: nothing to write" << std::endl;
    }
    for (const auto & surface : surfaces)
    {
      const std::string fileName = itk::UNetSurfaceFileName(argv[2], surface);
      itk::UNetWriteSurface(surface.Surface, fileName);
      Describe(surface, fileName);
    }
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
