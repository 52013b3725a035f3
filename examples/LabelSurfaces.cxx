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
#include <string>

int
main(int argc, char * argv[])
{
  if (argc < 3)
  {
    std::cerr << "Usage: " << argv[0] << " labels output.vtp|.vtk|.stl|.ply|.obj [--instances] [--iterations N]"
              << " [--pass-band B]" << std::endl;
    return EXIT_FAILURE;
  }
  itk::UNetLabelSurfaceOptions options;
  try
  {
    for (int a = 3; a < argc; ++a)
    {
      const std::string option = argv[a];
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
        std::cerr << "Unknown or incomplete option: " << option << std::endl;
        return EXIT_FAILURE;
      }
    }
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
  }
  catch (const itk::ExceptionObject & error)
  {
    std::cerr << "Error: " << error.GetDescription() << std::endl;
    return EXIT_FAILURE;
  }
  catch (const std::logic_error & error) // std::stoi, std::stod
  {
    std::cerr << "Error: a number was expected: " << error.what() << std::endl;
    return EXIT_FAILURE;
  }
  return EXIT_SUCCESS;
}
