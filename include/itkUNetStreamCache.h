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
#ifndef itkUNetStreamCache_h
#define itkUNetStreamCache_h

#include "itkImageAlgorithm.h"
#include "itkLexicographicCompare.h"
#include "itkTimeStamp.h"
#include "itkUNetTileGrid.h"

#include <map>
#include <vector>

namespace itk
{
namespace unet_detail
{

/** \class StreamCache
 * \brief What one update of the segmentation filter keeps for the next piece of a streamed update, so that every
 * tile runs through the network once whatever the pieces: the region its outputs completed and the probabilities of
 * the blended tiles that reach past that region.
 *
 * The next update takes from it the part of the last outputs that its own output region covers (copied out, with
 * ImageAlgorithm::Copy, before the outputs are reallocated, and back in afterwards) and the kept tiles. All of it is
 * valid while the pipeline has not changed since it was kept: the same tile grid, the pipeline's modification time
 * behind the time it was kept, and the outputs still buffered over the completed region.
 *
 * \sa UNetSegmentationImageFilter
 * \ingroup UNetSegmentation
 */
template <typename TLabelImage, typename TProbabilityImage>
class StreamCache
{
public:
  /** Spatial dimension of the outputs. */
  static constexpr unsigned int ImageDimension = TLabelImage::ImageDimension;
  /** The segmentation filter's tile grid, and its regions and tile indices. */
  /** @{ */
  using GridType = UNetTileGrid<ImageDimension>;
  using RegionType = typename GridType::RegionType;
  using TileIndexType = typename GridType::TileIndexType;
  /** @} */
  /** Tiles' class probabilities (classes x tile voxels, class by class, x fastest), by tile index in tile order. */
  using TileMapType = std::map<TileIndexType, std::vector<float>, Functor::CoLexicographicCompare>;

  /** What an update takes from the last one. */
  struct Reused
  {
    /** The reused part of the output region; empty when nothing is reused. */
    RegionType Region{};
    /** Copies of the last outputs over Region (no probabilities when they are not produced). */
    /** @{ */
    typename TLabelImage::Pointer       Labels{};
    typename TProbabilityImage::Pointer Probabilities{};
    /** @} */
    /** The kept blended tiles. */
    TileMapType Tiles{};

    /** Puts the reused voxels into the new outputs (`probabilities` null when not produced). */
    void
    RestoreInto(TLabelImage * labels, TProbabilityImage * probabilities) const
    {
      if (Region.GetNumberOfPixels() == 0)
      {
        return;
      }
      ImageAlgorithm::Copy(Labels.GetPointer(), labels, Region, Region);
      if (probabilities != nullptr)
      {
        ImageAlgorithm::Copy(Probabilities.GetPointer(), probabilities, Region, Region);
      }
    }
  };

  /** Whether what was kept still belongs to this pipeline (see the class description). */
  bool
  IsValidFor(const GridType & grid, const TLabelImage * labels, const TProbabilityImage * probabilities) const
  {
    // The pipeline's modification time (the filter's, the model's, the input's and everything upstream) is set before
    // an update and stays behind the time the last update finished as long as nothing changed since.
    if (!m_Valid || m_Grid != grid || labels->GetPipelineMTime() > m_Time.GetMTime() || !HoldsCompleted(labels, 1))
    {
      return false;
    }
    return probabilities == nullptr || HoldsCompleted(probabilities, probabilities->GetNumberOfComponentsPerPixel());
  }

  /** The part of `outputRegion` that the kept outputs hold (empty when there is none). */
  RegionType
  GetReusableRegion(const RegionType & outputRegion) const
  {
    RegionType reusable = m_Completed;
    return m_Valid && reusable.Crop(outputRegion) ? reusable : RegionType();
  }

  /** Whether `tile`'s probabilities are kept. */
  bool
  IsTileKept(const TileIndexType & tile) const
  {
    return m_Valid && m_Tiles.count(tile) > 0;
  }

  /** What an update of `outputRegion` reuses, if IsValidFor(); the cache is empty afterwards. */
  Reused
  Take(const GridType & grid, const RegionType & outputRegion, const TLabelImage * labels,
       const TProbabilityImage * probabilities)
  {
    Reused reused;
    if (this->IsValidFor(grid, labels, probabilities))
    {
      reused.Region = this->GetReusableRegion(outputRegion);
      reused.Labels = CopyOf(labels, reused.Region);
      reused.Probabilities = probabilities == nullptr ? nullptr : CopyOf(probabilities, reused.Region);
      reused.Tiles = std::move(m_Tiles);
    }
    this->Clear();
    return reused;
  }

  /** Keeps the tiles reaching past `completed`, the region the update's outputs now hold. */
  void
  Keep(const GridType & grid, const RegionType & completed, TileMapType tiles)
  {
    m_Grid = grid;
    m_Completed = completed;
    m_Tiles = std::move(tiles);
    m_Time.Modified();
    m_Valid = true;
  }

  /** Forgets what was kept: the next update reuses nothing. */
  void
  Clear()
  {
    m_Valid = false;
    m_Tiles.clear();
  }

private:
  template <typename TImage>
  bool
  HoldsCompleted(const TImage * image, unsigned int components) const
  {
    return image->GetBufferedRegion() == m_Completed &&
           image->GetPixelContainer()->Size() >= m_Completed.GetNumberOfPixels() * components;
  }

  /** A new image holding `image`'s voxels over `region`. */
  template <typename TImage>
  static typename TImage::Pointer
  CopyOf(const TImage * image, const RegionType & region)
  {
    auto copy = TImage::New();
    copy->SetRegions(region);
    copy->SetNumberOfComponentsPerPixel(image->GetNumberOfComponentsPerPixel());
    copy->Allocate();
    if (region.GetNumberOfPixels() > 0)
    {
      ImageAlgorithm::Copy(image, copy.GetPointer(), region, region);
    }
    return copy;
  }

  bool        m_Valid{ false };
  TimeStamp   m_Time{};
  GridType    m_Grid{};
  RegionType  m_Completed{};
  TileMapType m_Tiles{};
};

} // end namespace unet_detail
} // end namespace itk

#endif // itkUNetStreamCache_h
