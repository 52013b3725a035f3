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
#ifndef UNetCellTestHelpers_h
#define UNetCellTestHelpers_h

#include "itkImage.h"
#include "itkImageRegionConstIteratorWithIndex.h"
#include "itkImageRegionIteratorWithIndex.h"

#include <limits>
#include <map>
#include <random>
#include <vector>

namespace UNetTest
{

inline itk::Vector<double, 3>
Spacing3D(double x, double y, double z)
{
  itk::Vector<double, 3> spacing;
  spacing[0] = x;
  spacing[1] = y;
  spacing[2] = z;
  return spacing;
}

/** Balls of random centre and radius painted one over the other, so that many touch; label of ball k is
 * firstLabel + k * labelStep (not consecutive unless labelStep is 1). */
template <typename TLabelImage>
typename TLabelImage::Pointer
MakeCells(const typename TLabelImage::SizeType & size, unsigned int cells, unsigned int seed, double maximumRadius,
          int firstLabel = 1, int labelStep = 1)
{
  constexpr unsigned int          D = TLabelImage::ImageDimension;
  auto                            image = TLabelImage::New();
  typename TLabelImage::IndexType start;
  start.Fill(-2);
  image->SetRegions(typename TLabelImage::RegionType(start, size));
  image->Allocate(true);
  std::mt19937 generator(seed);
  for (unsigned int cell = 0; cell < cells; ++cell)
  {
    double centre[D];
    for (unsigned int axis = 0; axis < D; ++axis)
    {
      centre[axis] =
        std::uniform_real_distribution<>(start[axis], start[axis] + static_cast<double>(size[axis]))(generator);
    }
    const double radius = std::uniform_real_distribution<>(1.0, maximumRadius)(generator);
    const auto   label = static_cast<typename TLabelImage::PixelType>(firstLabel + labelStep * static_cast<int>(cell));
    for (itk::ImageRegionIteratorWithIndex<TLabelImage> it(image, image->GetLargestPossibleRegion()); !it.IsAtEnd();
         ++it)
    {
      double squared = 0.0;
      for (unsigned int axis = 0; axis < D; ++axis)
      {
        const double d = it.GetIndex()[axis] - centre[axis];
        squared += d * d;
      }
      if (squared <= radius * radius)
      {
        it.Set(label);
      }
    }
  }
  return image;
}

/** Paints `label` over the voxels of `region` (e.g. an unannotated block over cells and background). */
template <typename TLabelImage>
void
PaintBox(TLabelImage * image, const typename TLabelImage::RegionType & region, typename TLabelImage::PixelType label)
{
  for (itk::ImageRegionIteratorWithIndex<TLabelImage> it(image, region); !it.IsAtEnd(); ++it)
  {
    it.Set(label);
  }
}

/** Brute force: for every voxel, the distances to every cell (minimum over the cell's voxels), the two smallest.
 * Voxels with `ignoreLabel` (if not 0) belong to no cell. */
template <typename TLabelImage>
struct BruteForceDistances
{
  using LabelType = typename TLabelImage::PixelType;
  std::vector<double>                          nearest;
  std::vector<double>                          second;
  std::vector<LabelType>                       label;
  std::vector<typename TLabelImage::IndexType> index;
  unsigned int                                 cells{ 0 };

  BruteForceDistances(const TLabelImage * image, bool useSpacing, LabelType ignoreLabel = 0)
  {
    constexpr unsigned int D = TLabelImage::ImageDimension;
    std::map<typename TLabelImage::PixelType, std::vector<typename TLabelImage::IndexType>> cellVoxels;
    for (itk::ImageRegionConstIteratorWithIndex<TLabelImage> it(image, image->GetLargestPossibleRegion());
         !it.IsAtEnd();
         ++it)
    {
      index.push_back(it.GetIndex());
      label.push_back(it.Get());
      if (it.Get() != 0 && it.Get() != ignoreLabel)
      {
        cellVoxels[it.Get()].push_back(it.GetIndex());
      }
    }
    cells = static_cast<unsigned int>(cellVoxels.size());
    for (const auto & voxel : index)
    {
      double best = std::numeric_limits<double>::infinity();
      double next = std::numeric_limits<double>::infinity();
      for (const auto & cell : cellVoxels)
      {
        double distance = std::numeric_limits<double>::infinity();
        for (const auto & other : cell.second)
        {
          double squared = 0.0;
          for (unsigned int axis = 0; axis < D; ++axis)
          {
            const double d = (voxel[axis] - other[axis]) * (useSpacing ? image->GetSpacing()[axis] : 1.0);
            squared += d * d;
          }
          distance = std::min(distance, std::sqrt(squared));
        }
        if (distance < best)
        {
          next = best;
          best = distance;
        }
        else if (distance < next)
        {
          next = distance;
        }
      }
      nearest.push_back(best);
      second.push_back(next);
    }
  }
};

} // namespace UNetTest

#endif
