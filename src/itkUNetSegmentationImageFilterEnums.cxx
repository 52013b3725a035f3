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
#include "itkUNetSegmentationImageFilterEnums.h"

namespace itk
{

std::ostream &
operator<<(std::ostream & out, const UNetSegmentationImageFilterEnums::BoundaryCondition value)
{
  switch (value)
  {
    case UNetSegmentationImageFilterEnums::BoundaryCondition::Mirror:
      return out << "Mirror";
    case UNetSegmentationImageFilterEnums::BoundaryCondition::Constant:
      return out << "Constant";
  }
  return out << "BoundaryCondition(" << static_cast<int>(value) << ')';
}

std::ostream &
operator<<(std::ostream & out, const UNetSegmentationImageFilterEnums::Precision value)
{
  switch (value)
  {
    case UNetSegmentationImageFilterEnums::Precision::Float32:
      return out << "Float32";
    case UNetSegmentationImageFilterEnums::Precision::Float16:
      return out << "Float16";
    case UNetSegmentationImageFilterEnums::Precision::BFloat16:
      return out << "BFloat16";
  }
  return out << "Precision(" << static_cast<int>(value) << ')';
}

std::ostream &
operator<<(std::ostream & out, const UNetResamplingSegmentationImageFilterEnums::Interpolation value)
{
  switch (value)
  {
    case UNetResamplingSegmentationImageFilterEnums::Interpolation::Linear:
      return out << "Linear";
    case UNetResamplingSegmentationImageFilterEnums::Interpolation::BSpline:
      return out << "BSpline";
  }
  return out << "Interpolation(" << static_cast<int>(value) << ')';
}

} // end namespace itk
