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
#ifndef itkUNetSpacingUnits_h
#define itkUNetSpacingUnits_h

#include <optional>
#include <string>

namespace itk
{
namespace unet_detail
{

/** Millimetres in one of the physical units a model card's spacing and the filters' spacing units take ("mm", "um",
 * "nm"); nothing for any other, the card's "pixel" included. The one list of those units in the library. */
inline std::optional<double>
MillimetersPerSpacingUnit(const std::string & unit)
{
  if (unit == "mm")
  {
    return 1.0;
  }
  if (unit == "um")
  {
    return 1e-3;
  }
  if (unit == "nm")
  {
    return 1e-6;
  }
  return std::nullopt;
}

} // namespace unet_detail
} // namespace itk

#endif
