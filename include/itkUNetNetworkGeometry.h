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
#ifndef itkUNetNetworkGeometry_h
#define itkUNetNetworkGeometry_h

#include "itkIntTypes.h"
#include "itkMacro.h"

#include <vector>

namespace itk
{

/** \class UNetNetworkGeometry
 * \brief What the overlap-tile strategy needs to know of a network: its channels and classes, per axis the border
 * its valid convolutions lose, its downsampling factor and its smallest valid input edge, and the memory a forward
 * pass takes.
 *
 * UNetModel probes it from a TorchScript file; UNetTilePlan plans tiles from it alone, so that tile planning can be
 * tested with a geometry written by hand. Valid input edges along an axis are `MinimumInputSize + k *
 * DownsamplingFactor`, each mapped to `edge - 2 * Border` output voxels. Vectors are per axis, x first.
 *
 * \sa UNetModel, UNetTilePlan
 * \ingroup UNetSegmentation
 */
struct UNetNetworkGeometry
{
  /** The network's spatial dimension (2 or 3). */
  unsigned int Dimension{ 0 };
  /** The number of channels the network takes. */
  unsigned int InputChannels{ 0 };
  /** The number of classes, one probability each (2 for a network with a single output channel). */
  unsigned int Classes{ 0 };
  /** Per axis, the voxels a tile loses on each side to valid convolutions (0 for same-padded networks). */
  std::vector<SizeValueType> Border{};
  /** Per axis, the spacing of the valid input edges: the product of the poolings' strides. */
  std::vector<SizeValueType> DownsamplingFactor{};
  /** Per axis, the smallest valid input edge. */
  std::vector<SizeValueType> MinimumInputSize{};
  /** Bytes LibTorch allocates in a forward pass of one tile: ForwardBytesFixed + ForwardBytesPerInputVoxel * input
   * voxels. */
  /** @{ */
  double ForwardBytesFixed{ 0.0 };
  double ForwardBytesPerInputVoxel{ 0.0 };
  /** @} */

  /** Whether `other` describes a network that takes and gives the same tiles: the same dimension, input channels,
   * classes and, per axis, border, downsampling factor and smallest input (the memory model aside). */
  bool
  DescribesTheSameNetworkAs(const UNetNetworkGeometry & other) const
  {
    return Dimension == other.Dimension && InputChannels == other.InputChannels && Classes == other.Classes &&
           Border == other.Border && DownsamplingFactor == other.DownsamplingFactor &&
           MinimumInputSize == other.MinimumInputSize;
  }

  /** The smallest valid output edge along `axis`: `MinimumInputSize[axis] - 2 * Border[axis]`. */
  SizeValueType
  GetMinimumOutputSize(unsigned int axis) const
  {
    return MinimumInputSize.at(axis) - 2 * Border.at(axis);
  }

  /** Whether the network maps an input edge of `outputSize + 2 * Border[axis]` to `outputSize` along `axis`. */
  bool
  IsValidOutputSize(unsigned int axis, SizeValueType outputSize) const
  {
    const SizeValueType minimum = this->GetMinimumOutputSize(axis);
    return outputSize >= minimum && (outputSize - minimum) % DownsamplingFactor.at(axis) == 0;
  }

  /** The smallest valid output edge that is at least `outputSize`. */
  SizeValueType
  GetValidOutputSizeAtLeast(unsigned int axis, SizeValueType outputSize) const
  {
    const SizeValueType minimum = this->GetMinimumOutputSize(axis);
    const SizeValueType factor = DownsamplingFactor.at(axis);
    return outputSize <= minimum ? minimum : minimum + (outputSize - minimum + factor - 1) / factor * factor;
  }

  /** The largest valid output edge that is at most `outputSize`, or 0 if there is none. */
  SizeValueType
  GetValidOutputSizeAtMost(unsigned int axis, SizeValueType outputSize) const
  {
    const SizeValueType minimum = this->GetMinimumOutputSize(axis);
    const SizeValueType factor = DownsamplingFactor.at(axis);
    return outputSize < minimum ? 0 : minimum + (outputSize - minimum) / factor * factor;
  }

  /** Estimated peak bytes of a forward pass of `batchSize` tiles of `inputTileSize` voxels (per axis). */
  double
  EstimateForwardBytes(unsigned int batchSize, const std::vector<SizeValueType> & inputTileSize) const
  {
    double voxels = 1.0;
    for (const SizeValueType edge : inputTileSize)
    {
      voxels *= static_cast<double>(edge);
    }
    return batchSize * (ForwardBytesFixed + ForwardBytesPerInputVoxel * voxels);
  }
};

} // end namespace itk

#endif // itkUNetNetworkGeometry_h
