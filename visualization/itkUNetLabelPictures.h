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
#ifndef itkUNetLabelPictures_h
#define itkUNetLabelPictures_h

#include "itkUNetLabelSurfaces.h"

#include <array>
#include <string>
#include <vector>

namespace itk
{

/** A label's colour, RGB in [0, 1]: ten distinct colours, label 1 the first, repeating every ten labels. */
std::array<double, 3>
UNetLabelColor(long long label);

/** \brief Throws an itk::ExceptionObject, with the remedy, unless an X display is set.
 *
 * Debian's VTK 9.1 is built for X only (VTK_USE_X; neither OSMesa nor EGL), so even offscreen rendering opens an X
 * display through GLX; without one VTK aborts the process. On a machine without a display, run the program under
 * a virtual X server: `xvfb-run -a -s "-screen 0 1280x1024x24" program ...` (Mesa renders in software).
 *
 * \ingroup UNetSegmentation
 */
void
UNetRequireDisplay();

/** \brief A PNG picture of the surfaces, coloured by label, from a fixed camera.
 *
 * The camera looks from the front (anterior, LPS -y) with superior up, turned 30 degrees about the vertical and
 * raised 20 degrees, and is zoomed to fit all surfaces. Rendered offscreen (see UNetRequireDisplay).
 *
 * \ingroup UNetSegmentation
 */
void
UNetRenderSurfaces(const std::vector<UNetLabelSurface> & surfaces, int width, int height,
                   const std::string & pngFileName);

/** \brief A PNG picture of a 2-D label map's contours, coloured by label, over a 2-D image (or black, image null).
 *
 * Both are placed in physical space with their own origin, spacing and direction, and seen from the viewpoint
 * of an image viewer: x to the right, y down (row 0 at the top), zoomed to fit the image (or the label map) with
 * its aspect kept. At the image's own size in pixels and with unit spacing, picture pixel (x, y) is image pixel
 * (x, y). The image is shown with nearest-neighbour pixels over its full range of values.
 *
 * \ingroup UNetSegmentation
 */
void
UNetRenderLabelContours(vtkImageData * labels, vtkImageData * image, int width, int height,
                        const std::string & pngFileName);

} // namespace itk

#endif // itkUNetLabelPictures_h
