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

#include "itkMacro.h"
#include "itkUNetVTKImage.h"

#include <vtkActor.h>
#include <vtkCamera.h>
#include <vtkErrorCode.h>
#include <vtkImageActor.h>
#include <vtkImageMapper3D.h>
#include <vtkImageProperty.h>
#include <vtkMatrix4x4.h>
#include <vtkNew.h>
#include <vtkPNGWriter.h>
#include <vtkPolyDataMapper.h>
#include <vtkProperty.h>
#include <vtkRenderWindow.h>
#include <vtkRenderer.h>
#include <vtkWindowToImageFilter.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace itk
{
namespace
{
constexpr double backgroundColor[3] = { 0.10, 0.11, 0.14 };

void
CheckPictureSize(int width, int height)
{
  if (width < 1 || height < 1 || width > 16384 || height > 16384)
  {
    itkGenericExceptionMacro("UNetSegmentation pictures: a picture is 1 to 16384 pixels wide and high, not "
                             << width << " x " << height);
  }
}

/** Renders offscreen at the given size and writes the picture as an 8-bit RGB PNG. */
void
RenderToPNG(vtkRenderer * renderer, int width, int height, const std::string & pngFileName)
{
  UNetRequireDisplay();
  vtkNew<vtkRenderWindow> window;
  window->SetOffScreenRendering(1);
  window->SetSize(width, height);
  window->AddRenderer(renderer);
  window->Render();

  vtkNew<vtkWindowToImageFilter> grab;
  grab->SetInput(window);
  grab->SetInputBufferTypeToRGB();
  grab->ReadFrontBufferOff();
  vtkNew<vtkPNGWriter> writer;
  writer->SetInputConnection(grab->GetOutputPort());
  writer->SetFileName(pngFileName.c_str());
  writer->Write();
  if (writer->GetErrorCode() != vtkErrorCode::NoError)
  {
    itkGenericExceptionMacro("UNetSegmentation pictures: could not write "
                             << pngFileName << ": " << vtkErrorCode::GetStringFromErrorCode(writer->GetErrorCode()));
  }
}

/** The physical bounding box of a 2-D image's pixels, their edges included (half a pixel beyond the centres). */
void
PhysicalPixelBounds(vtkImageData * image, double bounds[6])
{
  int extent[6];
  image->GetExtent(extent);
  bounds[0] = bounds[2] = bounds[4] = std::numeric_limits<double>::max();
  bounds[1] = bounds[3] = bounds[5] = std::numeric_limits<double>::lowest();
  for (int corner = 0; corner < 4; ++corner)
  {
    const double index[3] = { (corner & 1) ? extent[1] + 0.5 : extent[0] - 0.5,
                              (corner & 2) ? extent[3] + 0.5 : extent[2] - 0.5,
                              static_cast<double>(extent[4]) };
    double point[3];
    image->TransformContinuousIndexToPhysicalPoint(index, point);
    for (int axis = 0; axis < 3; ++axis)
    {
      bounds[2 * axis] = std::min(bounds[2 * axis], point[axis]);
      bounds[2 * axis + 1] = std::max(bounds[2 * axis + 1], point[axis]);
    }
  }
}
} // namespace

std::array<double, 3>
UNetLabelColor(long long label)
{
  // Sasha Trubetskoy's distinct colours, in order: red, green, yellow, blue, orange, purple, cyan, magenta, lime, pink.
  static constexpr unsigned char palette[10][3] = { { 230, 25, 75 },  { 60, 180, 75 },  { 255, 225, 25 },
                                                    { 0, 130, 200 },  { 245, 130, 48 }, { 145, 30, 180 },
                                                    { 70, 240, 240 }, { 240, 50, 230 }, { 210, 245, 60 },
                                                    { 250, 190, 212 } };
  const long long                entry = ((label - 1) % 10 + 10) % 10;
  return { palette[entry][0] / 255.0, palette[entry][1] / 255.0, palette[entry][2] / 255.0 };
}

void
UNetRequireDisplay()
{
  const char * display = std::getenv("DISPLAY");
  if (display == nullptr || *display == '\0')
  {
    itkGenericExceptionMacro(
      "UNetSegmentation pictures: no X display (DISPLAY is not set). Debian's VTK 9.1 renders, offscreen too, through "
      "X and GLX only (it has neither OSMesa nor EGL): run the program under a virtual X server, e.g. "
      "xvfb-run -a -s \"-screen 0 1280x1024x24\" PROGRAM ARGUMENTS");
  }
}

void
UNetRenderSurfaces(const std::vector<UNetLabelSurface> & surfaces, int width, int height,
                   const std::string & pngFileName)
{
  CheckPictureSize(width, height);
  vtkNew<vtkRenderer> renderer;
  renderer->SetBackground(backgroundColor);
  for (const auto & surface : surfaces)
  {
    vtkNew<vtkPolyDataMapper> mapper;
    mapper->SetInputData(surface.Surface);
    mapper->ScalarVisibilityOff();
    vtkNew<vtkActor> actor;
    actor->SetMapper(mapper);
    actor->GetProperty()->SetColor(UNetLabelColor(surface.Label).data());
    actor->GetProperty()->SetSpecular(0.2);
    actor->GetProperty()->SetSpecularPower(20.0);
    renderer->AddActor(actor);
  }
  vtkCamera * camera = renderer->GetActiveCamera();
  camera->SetFocalPoint(0.0, 0.0, 0.0);
  camera->SetPosition(0.0, -1.0, 0.0); // anterior: LPS -y
  camera->SetViewUp(0.0, 0.0, 1.0);    // superior
  camera->Azimuth(30.0);
  camera->Elevation(20.0);
  camera->OrthogonalizeViewUp();
  renderer->ResetCamera();
  // No FXAA: with VTK 9.1 offscreen under Xvfb (Mesa) it turned the whole picture black here.
  RenderToPNG(renderer, width, height, pngFileName);
}

void
UNetRenderLabelContours(vtkImageData * labels, vtkImageData * image, int width, int height,
                        const std::string & pngFileName)
{
  CheckPictureSize(width, height);
  if (labels == nullptr)
  {
    itkGenericExceptionMacro("UNetRenderLabelContours: the label map is null");
  }
  for (vtkImageData * picture : { labels, image })
  {
    int extent[6];
    if (picture != nullptr && (picture->GetExtent(extent), extent[5] != extent[4]))
    {
      itkGenericExceptionMacro("UNetRenderLabelContours: the label map and the image are 2-D (one slice)");
    }
  }
  vtkNew<vtkRenderer> renderer;
  renderer->SetBackground(0.0, 0.0, 0.0);
  double bounds[6];
  PhysicalPixelBounds(image != nullptr ? image : labels, bounds);

  if (image != nullptr)
  {
    vtkNew<vtkImageActor> slice;
    slice->GetMapper()->SetInputData(UNetIndexSpaceImage(image));
    slice->GetMapper()->BorderOn(); // the edge pixels whole, not cut at their centres
    slice->SetUserMatrix(image->GetIndexToPhysicalMatrix());
    double range[2];
    image->GetScalarRange(range);
    slice->GetProperty()->SetColorWindow(std::max(range[1] - range[0], 1e-12));
    slice->GetProperty()->SetColorLevel(0.5 * (range[0] + range[1]));
    slice->GetProperty()->SetInterpolationTypeToNearest();
    renderer->AddViewProp(slice);
  }

  const double diagonal = std::hypot(bounds[1] - bounds[0], bounds[3] - bounds[2]);
  for (const auto & contour : UNetExtractLabelSurfaces(labels))
  {
    vtkNew<vtkPolyDataMapper> mapper;
    mapper->SetInputData(contour.Surface);
    mapper->ScalarVisibilityOff();
    vtkNew<vtkActor> actor;
    actor->SetMapper(mapper);
    actor->GetProperty()->SetColor(UNetLabelColor(contour.Label).data());
    actor->GetProperty()->LightingOff(); // the label's own colour, unshaded
    actor->GetProperty()->SetLineWidth(2.0);
    actor->SetPosition(0.0, 0.0, -1e-3 * diagonal); // in front of the image (the camera looks along +z)
    renderer->AddActor(actor);
  }

  // An image viewer's view: looking along +z, y down. The parallel scale is half the height the picture shows.
  const double centre[3] = { 0.5 * (bounds[0] + bounds[1]), 0.5 * (bounds[2] + bounds[3]), 0.0 };
  const double aspect = static_cast<double>(width) / height;
  vtkCamera *  camera = renderer->GetActiveCamera();
  camera->ParallelProjectionOn();
  camera->SetFocalPoint(centre);
  camera->SetPosition(centre[0], centre[1], centre[2] - std::max(diagonal, 1.0));
  camera->SetViewUp(0.0, -1.0, 0.0);
  camera->SetParallelScale(0.5 * std::max(bounds[3] - bounds[2], (bounds[1] - bounds[0]) / aspect));
  renderer->ResetCameraClippingRange();
  RenderToPNG(renderer, width, height, pngFileName);
}

} // namespace itk
