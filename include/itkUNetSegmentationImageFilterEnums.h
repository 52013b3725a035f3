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
#ifndef itkUNetSegmentationImageFilterEnums_h
#define itkUNetSegmentationImageFilterEnums_h

#include "UNetSegmentationExport.h"

#include <cstdint>
#include <ostream>

namespace itk
{

/** \class UNetSegmentationImageFilterEnums
 * \brief Enums of UNetSegmentationImageFilter, in a class of their own as ITK's wrapping expects.
 * \sa UNetSegmentationImageFilter, UNetBoundaryCondition
 * \ingroup UNetSegmentation */
class UNetSegmentationImageFilterEnums
{
public:
  /** What fills a tile's context outside the image (see UNetBoundaryCondition). */
  enum class BoundaryCondition : uint8_t
  {
    /** Mirror the image at its edges, repeating the edge voxel (... 1 0 | 0 1 ... n-1 | n-1 n-2 ...), again and
     * again when the context is wider than the image; the convention of ITK's MirrorPadImageFilter. */
    Mirror,
    /** A constant value (0: zero padding). */
    Constant
  };

  /** The floating-point type the network computes in (UNetModel::SetPrecision). */
  enum class Precision : uint8_t
  {
    /** As the network was saved: single precision (the only choice on the CPU). */
    Float32,
    /** CUDA's automatic mixed precision in half precision: convolutions and matrix products in float16, reductions
     * and the probabilities in float32. */
    Float16,
    /** As Float16 with bfloat16, whose float32 exponent range cannot overflow where float16's can. */
    BFloat16
  };
};

/** Prints "Mirror" or "Constant". */
extern UNetSegmentation_EXPORT std::ostream &
operator<<(std::ostream & out, const UNetSegmentationImageFilterEnums::BoundaryCondition value);

/** Prints "Float32", "Float16" or "BFloat16". */
extern UNetSegmentation_EXPORT std::ostream &
                               operator<<(std::ostream & out, const UNetSegmentationImageFilterEnums::Precision value);

/** \class UNetResamplingSegmentationImageFilterEnums
 * \brief Enums of UNetResamplingSegmentationImageFilter, in a class of their own as ITK's wrapping expects.
 * \ingroup UNetSegmentation */
class UNetResamplingSegmentationImageFilterEnums
{
public:
  /** How the input is resampled to the network's spacing. */
  enum class Interpolation : uint8_t
  {
    /** Linear interpolation (any input). */
    Linear,
    /** Cubic B-spline interpolation (multi-component inputs channel by channel). */
    BSpline
  };
};

/** Prints "Linear" or "BSpline". */
extern UNetSegmentation_EXPORT std::ostream &
operator<<(std::ostream & out, const UNetResamplingSegmentationImageFilterEnums::Interpolation value);

} // end namespace itk

#endif // itkUNetSegmentationImageFilterEnums_h
