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
#ifndef itkUNetTilePlan_h
#define itkUNetTilePlan_h

#include "itkIndexRange.h"
#include "itkUNetMemoryAllocationError.h"
#include "itkUNetNetworkGeometry.h"
#include "itkUNetTileGrid.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <ostream>
#include <sstream>
#include <utility>
#include <vector>

namespace itk
{

/** \class UNetTilePlan
 * \brief The tiles and batches for one image: from the network's geometry, the image's region and the user's
 * settings, the tile grid, the tiles a forward pass takes and the working memory they need.
 *
 * The one place where tile sizes and overlaps are checked: a TileSize edge must be valid for the network and, where
 * the image needs more than one tile along its axis, leave room to advance by a multiple of the downsampling factor
 * with the overlap (UNetTileGrid). An edge of 0 is chosen: the valid edges that need the fewest network input voxels
 * for the whole image (fewer, larger tiles lose less to the border; a last tile that overhangs the image wastes the
 * overhang, and the overlap alignment leaves is computed twice) while the estimated working memory stays within the
 * budget, for a batch of TilesPerBatch tiles or, when that is 0, of one network input per forward pass side by side
 * (Settings::AutomaticPasses). TilesPerBatch 0 takes the tiles of AutomaticPasses passes of one network input each, or
 * of as many as keep a pass within Settings::SmallPassBytes, where the budget holds them (AutomaticPasses 0: fills the
 * budget, up to 64 tiles). A batch that alone exceeds the budget is a MemoryAllocationError.
 *
 * A pure computation: no pipeline, no network; UNetSegmentationImageFilter makes one per update.
 *
 * \sa UNetSegmentationImageFilter, UNetTileGrid, UNetNetworkGeometry
 * \ingroup UNetSegmentation
 */
template <unsigned int VDimension>
class UNetTilePlan
{
public:
  /** The tile grid a plan lays out. */
  using GridType = UNetTileGrid<VDimension>;
  /** Regions and sizes of image voxels. */
  /** @{ */
  using RegionType = typename GridType::RegionType;
  using SizeType = typename GridType::SizeType;
  /** @} */

  /** The user's settings, and what the filter's pixel types make a voxel cost. */
  struct Settings
  {
    /** The filter's TileSize, TileOverlap, TilesPerBatch and MemoryBudget (see UNetSegmentationImageFilter). */
    /** @{ */
    SizeType      TileSize{ { 0 } };
    SizeValueType TileOverlap{ 0 };
    unsigned int  TilesPerBatch{ 0 };
    double        MemoryBudgetMegabytes{ 1024.0 };
    /** @} */
    /** What TilesPerBatch 0 means. 0 (a GPU): as many tiles as the budget holds, up to 64. N > 0 (the CPU, N
     * forward passes side by side): the tiles of N passes of one network input each, or of as many inputs as keep a
     * pass's forward memory (UNetNetworkGeometry::EstimateForwardBytes) within SmallPassBytes, fewer where the budget
     * holds fewer; an automatic tile size is chosen for one input per pass. */
    unsigned int AutomaticPasses{ 0 };
    /** The forward memory up to which one of AutomaticPasses takes more than one network input (0: never). */
    double SmallPassBytes{ 0.0 };
    /** Network inputs per tile: 2^k with test-time flips along k axes. */
    unsigned int NetworkInputsPerTile{ 1 };
    /** Whether the filter produces the "Probabilities" output, whose buffers then count in a piece's memory. */
    bool GenerateProbabilities{ true };
    /** Bytes of a label, and of a component of an input voxel. */
    /** @{ */
    double LabelBytes{ 1.0 };
    double InputValueBytes{ 4.0 };
    /** @} */
  };

  /** The working memory of a stream piece, in bytes, term by term. The requested piece itself is the caller's. */
  struct MemoryEstimate
  {
    /** LibTorch's allocations in a forward pass of the batch (UNetNetworkGeometry::EstimateForwardBytes). */
    double Activations{ 0.0 };
    /** The batch's gathered input tiles and their probabilities, flipped copies included. */
    /** @{ */
    double BatchInputs{ 0.0 };
    double BatchProbabilities{ 0.0 };
    /** @} */
    /** Averaging flipped copies: a double sum and two float buffers of a tile's probabilities. */
    double FlipAveraging{ 0.0 };
    /** A tile's blending weights (blended tiles only). */
    double BlendingWeights{ 0.0 };
    /** The layers of whole tiles by which a piece grows at each end and keeps for the next piece (ITK streams along
     * the last axis first): outputs, input with its context, and blended tiles reaching past the piece. */
    /** @{ */
    double PieceOutputs{ 0.0 };
    double PieceInputs{ 0.0 };
    double KeptTiles{ 0.0 };
    /** @} */

    /** What one batch alone costs. */
    double
    GetBatchBytes() const
    {
      return Activations + BatchInputs + BatchProbabilities + FlipAveraging;
    }
    /** The whole working memory: every term. */
    double
    GetTotalBytes() const
    {
      return this->GetBatchBytes() + BlendingWeights + PieceOutputs + PieceInputs + KeptTiles;
    }
  };

  /** An empty plan: no image, no tiles. */
  UNetTilePlan() = default;

  /** Checks the settings, chooses what is automatic, and estimates the memory; throws an ExceptionObject for a tile
   * size the network cannot take or cannot align, and a MemoryAllocationError for a batch beyond the budget. */
  UNetTilePlan(const UNetNetworkGeometry & geometry, const RegionType & image, const Settings & settings)
    : m_Geometry(geometry)
    , m_Image(image)
    , m_Settings(settings)
  {
    this->VerifyTileSize();
    const unsigned int batchForTileSize = this->GetBatchForTileSize();
    SizeType           tileSize = this->ChooseTileSize(batchForTileSize);
    if (batchForTileSize > 1 && m_Settings.TilesPerBatch == 0 && !this->FitsBudget(tileSize, batchForTileSize))
    {
      tileSize = this->ChooseTileSize(1); // no automatic batch fits: the best tile for one
    }
    m_Grid = GridType(image,
                      tileSize,
                      settings.TileOverlap,
                      this->PerAxis(geometry.DownsamplingFactor),
                      this->PerAxis(geometry.Border));
    m_BatchSize = this->ChooseBatchSize(tileSize);
    m_Memory = this->EstimateMemory(tileSize, m_BatchSize);
    m_WithinBudget = m_Memory.GetTotalBytes() <= this->GetBudgetBytes();
    if (m_Memory.GetBatchBytes() > this->GetBudgetBytes())
    {
      std::ostringstream message;
      message << "A batch of " << m_BatchSize << " tile(s) of " << tileSize << " output voxels needs about "
              << m_Memory.GetBatchBytes() / (1024.0 * 1024.0) << " MB, more than MemoryBudget ("
              << settings.MemoryBudgetMegabytes << " MB); choose a smaller TileSize or TilesPerBatch, or raise "
              << "MemoryBudget.";
      unet_detail::ThrowMemoryAllocationError(__FILE__, __LINE__, message.str());
    }
  }

  /** The network the plan is for. */
  const UNetNetworkGeometry &
  GetGeometry() const
  {
    return m_Geometry;
  }
  /** The settings the plan was made with. */
  const Settings &
  GetSettings() const
  {
    return m_Settings;
  }
  /** The tile grid, with the chosen or given tile size. */
  const GridType &
  GetGrid() const
  {
    return m_Grid;
  }
  /** The tiles a batch takes: TilesPerBatch, or as many as the budget holds, at most those of AutomaticPasses passes
   * (64 if 0) and no more than the image has. */
  unsigned int
  GetBatchSize() const
  {
    return m_BatchSize;
  }
  /** The working memory of the grid's tiles in batches of GetBatchSize(). */
  const MemoryEstimate &
  GetMemoryEstimate() const
  {
    return m_Memory;
  }
  /** Whether the working memory stays within the budget (not when even the smallest tiles exceed it). */
  bool
  IsWithinBudget() const
  {
    return m_WithinBudget;
  }

  /** The working memory of tiles of `tileSize` in batches of `batchSize` over this plan's image. */
  MemoryEstimate
  EstimateMemory(const SizeType & tileSize, unsigned int batchSize) const
  {
    const double                     channels = m_Geometry.InputChannels;
    const double                     classes = m_Geometry.Classes;
    const double                     copies = m_Settings.NetworkInputsPerTile;
    const bool                       blend = m_Settings.TileOverlap > 0; // as UNetTileGrid decides
    const std::vector<SizeValueType> inputTileSize = this->InputTileSize(tileSize);
    double                           inputTileVoxels = 1.0;
    double                           outputTileVoxels = 1.0;
    for (unsigned int axis = 0; axis < VDimension; ++axis)
    {
      inputTileVoxels *= static_cast<double>(inputTileSize[axis]);
      outputTileVoxels *= static_cast<double>(tileSize[axis]);
    }
    MemoryEstimate memory;
    memory.Activations = m_Geometry.EstimateForwardBytes(static_cast<unsigned int>(batchSize * copies), inputTileSize);
    memory.BatchInputs = batchSize * copies * channels * inputTileVoxels * sizeof(float);
    memory.BatchProbabilities = batchSize * copies * classes * outputTileVoxels * sizeof(float);
    memory.FlipAveraging = copies > 1 ? classes * outputTileVoxels * (sizeof(double) + 2 * sizeof(float)) : 0.0;
    memory.BlendingWeights = blend ? outputTileVoxels * sizeof(float) : 0.0;

    constexpr unsigned int last = VDimension - 1;
    double                 layerOutputVoxels = static_cast<double>(tileSize[last]);
    double                 layerInputVoxels = static_cast<double>(std::min(inputTileSize[last], m_Image.GetSize(last)));
    double                 layerTiles = 1.0;
    for (unsigned int axis = 0; axis < last; ++axis)
    {
      layerOutputVoxels *= static_cast<double>(m_Image.GetSize(axis));
      layerInputVoxels *= static_cast<double>(m_Image.GetSize(axis));
      layerTiles *= static_cast<double>(this->NumberOfTilesAlong(axis, tileSize[axis]));
    }
    // Per output voxel: the label and, when produced or blended, the probabilities (blending adds a weight sum).
    const double probabilityBytes = (m_Settings.GenerateProbabilities || blend ? classes * sizeof(float) : 0.0);
    const double outputVoxelBytes = m_Settings.LabelBytes + probabilityBytes + (blend ? sizeof(float) : 0.0);
    memory.PieceOutputs = 3.0 * layerOutputVoxels * outputVoxelBytes;
    memory.PieceInputs = 2.0 * layerInputVoxels * channels * m_Settings.InputValueBytes;
    memory.KeptTiles = blend ? 2.0 * layerTiles * classes * outputTileVoxels * sizeof(float) : 0.0;
    return memory;
  }

private:
  /** The network input of a tile of `tileSize`: the tile with its context. */
  std::vector<SizeValueType>
  InputTileSize(const SizeType & tileSize) const
  {
    std::vector<SizeValueType> inputTileSize(VDimension);
    for (unsigned int axis = 0; axis < VDimension; ++axis)
    {
      inputTileSize[axis] = tileSize[axis] + 2 * m_Geometry.Border[axis];
    }
    return inputTileSize;
  }

  SizeType
  PerAxis(const std::vector<SizeValueType> & values) const
  {
    SizeType size;
    std::copy_n(values.begin(), VDimension, size.begin());
    return size;
  }

  double
  GetBudgetBytes() const
  {
    return m_Settings.MemoryBudgetMegabytes * 1024.0 * 1024.0;
  }

  /** How many tiles of `edge` cover the image along `axis` on the aligned grid; 0 when such tiles cannot advance by
   * a multiple of the factor and one does not cover the image. */
  SizeValueType
  NumberOfTilesAlong(unsigned int axis, SizeValueType edge) const
  {
    const SizeValueType extent = m_Image.GetSize(axis);
    const SizeValueType stride =
      GridType::AlignedStride(edge, m_Settings.TileOverlap, m_Geometry.DownsamplingFactor[axis]);
    if (stride == 0)
    {
      return edge >= extent ? 1 : 0;
    }
    return GridType::NumberOfTilesAlong(extent, edge, stride);
  }

  void
  VerifyTileSize() const
  {
    for (unsigned int axis = 0; axis < VDimension; ++axis)
    {
      const SizeValueType edge = m_Settings.TileSize[axis];
      if (edge == 0)
      {
        continue;
      }
      if (m_Settings.TileOverlap >= edge)
      {
        itkGenericExceptionMacro("The tile overlap (" << m_Settings.TileOverlap
                                                      << ") must be smaller than the tile edge (" << edge << ").");
      }
      if (!m_Geometry.IsValidOutputSize(axis, edge))
      {
        itkGenericExceptionMacro("TileSize[" << axis << "] = " << edge
                                             << " is not valid for the network; the nearest valid tile edges are "
                                             << m_Geometry.GetValidOutputSizeAtMost(axis, edge) << " and "
                                             << m_Geometry.GetValidOutputSizeAtLeast(axis, edge)
                                             << " (valid edges: " << m_Geometry.GetMinimumOutputSize(axis) << " + k * "
                                             << m_Geometry.DownsamplingFactor[axis] << ").");
      }
      this->VerifyAlignable(axis, edge);
    }
  }

  void
  VerifyAlignable(unsigned int axis, SizeValueType edge) const
  {
    if (this->NumberOfTilesAlong(axis, edge) != 0)
    {
      return;
    }
    const SizeValueType factor = m_Geometry.DownsamplingFactor[axis];
    const SizeValueType overlap = m_Settings.TileOverlap;
    itkGenericExceptionMacro("TileSize[" << axis << "] = " << edge
                                         << " cannot be aligned to the network's pooling grid: tiles must advance by "
                                            "a multiple of its downsampling factor ("
                                         << factor << ") and overlap by at least TileOverlap (" << overlap
                                         << "), so an edge must be at least " << overlap + factor
                                         << "; the nearest tile edges that work are "
                                         << m_Geometry.GetValidOutputSizeAtLeast(axis, overlap + factor) << ", or "
                                         << m_Geometry.GetValidOutputSizeAtLeast(axis, m_Image.GetSize(axis))
                                         << " (one tile across the image).");
  }

  /** Per axis, the candidate edges (ascending) with the network input they cost along it: the smallest valid edge
   * for each number of tiles, since a larger one with as many tiles costs more input and memory for nothing. */
  struct Candidates
  {
    std::vector<SizeValueType> Edges{};
    std::vector<double>        InputVoxels{};
    std::vector<double>        Tiles{};
  };

  Candidates
  CandidatesAlong(unsigned int axis) const
  {
    Candidates          candidates;
    const SizeValueType border = m_Geometry.Border[axis];
    const auto          add = [&](SizeValueType edge, SizeValueType tiles) {
      candidates.Edges.push_back(edge);
      candidates.InputVoxels.push_back(static_cast<double>(tiles * (edge + 2 * border)));
      candidates.Tiles.push_back(static_cast<double>(tiles));
    };
    if (m_Settings.TileSize[axis] != 0)
    {
      add(m_Settings.TileSize[axis], this->NumberOfTilesAlong(axis, m_Settings.TileSize[axis]));
      return candidates;
    }
    const SizeValueType overlap = m_Settings.TileOverlap;
    const SizeValueType oneTile =
      m_Geometry.GetValidOutputSizeAtLeast(axis, std::max(m_Image.GetSize(axis), overlap + 1));
    SizeValueType previousTiles = 0;
    for (SizeValueType edge = m_Geometry.GetValidOutputSizeAtLeast(axis, overlap + 1); edge <= oneTile;
         edge += m_Geometry.DownsamplingFactor[axis])
    {
      const SizeValueType tiles = this->NumberOfTilesAlong(axis, edge);
      if (tiles != 0 && tiles != previousTiles)
      {
        add(edge, tiles);
        previousTiles = tiles;
      }
    }
    return candidates;
  }

  /** The automatic tile size: over every combination of candidate edges of the axes before the last, the last axis's
   * best edge within the budget (memory grows with the edge, so the best edge up to the largest that fits, found by
   * bisection); the combination that needs the fewest network input voxels and, among those that need as many (a
   * network without a border needs the image's voxels at any tile size), the fewest tiles. */
  SizeType
  ChooseTileSize(unsigned int batch) const
  {
    Candidates candidates[VDimension];
    SizeType   smallest;
    for (unsigned int axis = 0; axis < VDimension; ++axis)
    {
      candidates[axis] = this->CandidatesAlong(axis);
      smallest[axis] = candidates[axis].Edges.front();
    }
    constexpr unsigned int last = VDimension - 1;
    const Candidates &     lastAxis = candidates[last];
    std::vector<size_t>    bestUpTo(lastAxis.Edges.size());
    for (size_t j = 0; j < bestUpTo.size(); ++j)
    {
      // Larger edges come with fewer tiles: on a tie in input, the larger.
      bestUpTo[j] = (j == 0 || lastAxis.InputVoxels[j] <= lastAxis.InputVoxels[bestUpTo[j - 1]]) ? j : bestUpTo[j - 1];
    }
    Size<VDimension - 1> counts;
    for (unsigned int axis = 0; axis < last; ++axis)
    {
      counts[axis] = candidates[axis].Edges.size();
    }
    // (network input voxels, tiles) of the best so far, compared in that order.
    std::pair<double, double> bestCost{ std::numeric_limits<double>::infinity(), 0.0 };
    SizeType                  best = smallest;
    for (const auto & choice : ZeroBasedIndexRange<VDimension - 1>(counts))
    {
      SizeType                  trial = smallest;
      std::pair<double, double> cost{ 1.0, 1.0 };
      for (unsigned int axis = 0; axis < last; ++axis)
      {
        trial[axis] = candidates[axis].Edges[choice[axis]];
        cost.first *= candidates[axis].InputVoxels[choice[axis]];
        cost.second *= candidates[axis].Tiles[choice[axis]];
      }
      const size_t fits = this->CountLastEdgesWithinBudget(trial, lastAxis.Edges, batch);
      if (fits == 0)
      {
        continue;
      }
      const size_t lastEdge = bestUpTo[fits - 1];
      cost.first *= lastAxis.InputVoxels[lastEdge];
      cost.second *= lastAxis.Tiles[lastEdge];
      if (cost < bestCost)
      {
        bestCost = cost;
        best = trial;
        best[last] = lastAxis.Edges[lastEdge];
      }
    }
    return best;
  }

  /** How many of the ascending last-axis `edges`, with the other axes as in `trial`, fit the budget. */
  size_t
  CountLastEdgesWithinBudget(SizeType trial, const std::vector<SizeValueType> & edges, unsigned int batch) const
  {
    size_t fits = 0;
    size_t overflows = edges.size();
    while (fits < overflows)
    {
      const size_t middle = (fits + overflows) / 2;
      trial[VDimension - 1] = edges[middle];
      if (this->FitsBudget(trial, batch))
      {
        fits = middle + 1;
      }
      else
      {
        overflows = middle;
      }
    }
    return fits;
  }

  /** Whether a batch of `batch` tiles of `tileSize` stays within the budget. */
  bool
  FitsBudget(const SizeType & tileSize, unsigned int batch) const
  {
    return this->EstimateMemory(tileSize, batch).GetTotalBytes() <= this->GetBudgetBytes();
  }

  /** The batch an automatic tile size must fit the budget with: TilesPerBatch, else one network input per pass. */
  unsigned int
  GetBatchForTileSize() const
  {
    return m_Settings.TilesPerBatch > 0 ? m_Settings.TilesPerBatch : this->TilesOfAutomaticPasses(1);
  }

  /** The tiles of AutomaticPasses passes of `inputsPerPass` network inputs each; at least one. */
  unsigned int
  TilesOfAutomaticPasses(unsigned int inputsPerPass) const
  {
    return std::max(m_Settings.AutomaticPasses * inputsPerPass / m_Settings.NetworkInputsPerTile, 1u);
  }

  /** The most tiles an automatic batch of `tileSize` takes: 64 for AutomaticPasses 0, else the tiles of that many
   * passes of as many network inputs as SmallPassBytes holds, from one to 64. */
  unsigned int
  GetMostAutomaticTiles(const SizeType & tileSize) const
  {
    if (m_Settings.AutomaticPasses == 0)
    {
      return 64u;
    }
    const double inputBytes = m_Geometry.EstimateForwardBytes(1, this->InputTileSize(tileSize));
    double       inputsPerPass = 1.0;
    if (m_Settings.SmallPassBytes > 0.0)
    {
      inputsPerPass =
        inputBytes > 0.0 ? std::min(std::max(std::floor(m_Settings.SmallPassBytes / inputBytes), 1.0), 64.0) : 64.0;
    }
    return this->TilesOfAutomaticPasses(static_cast<unsigned int>(inputsPerPass));
  }

  /** TilesPerBatch, or as many tiles a batch as the budget holds, at most GetMostAutomaticTiles() and no more than
   * the image has. */
  unsigned int
  ChooseBatchSize(const SizeType & tileSize) const
  {
    if (m_Settings.TilesPerBatch > 0)
    {
      return m_Settings.TilesPerBatch;
    }
    const unsigned int  most = this->GetMostAutomaticTiles(tileSize);
    const SizeValueType tiles = RegionType(m_Grid.GetNumberOfTiles()).GetNumberOfPixels();
    unsigned int        batch = 1;
    while (batch < std::min<SizeValueType>(most, tiles) && this->FitsBudget(tileSize, batch + 1))
    {
      ++batch;
    }
    return batch;
  }

  UNetNetworkGeometry m_Geometry{};
  RegionType          m_Image{};
  Settings            m_Settings{};
  GridType            m_Grid{};
  unsigned int        m_BatchSize{ 1 };
  MemoryEstimate      m_Memory{};
  bool                m_WithinBudget{ true };
};

} // end namespace itk

#endif // itkUNetTilePlan_h
