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
#ifndef itkUNetTileBatchRunner_h
#define itkUNetTileBatchRunner_h

#include "itkNumericTraits.h"
#include "itkOutputWindow.h"
#include "itkProcessObject.h"
#include "itkUNetBoundaryCondition.h"
#include "itkUNetModel.h"
#include "itkUNetNormalization.h"
#include "itkUNetRegionLines.h"
#include "itkUNetTileFlips.h"
#include "itkUNetTileGrid.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <new>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace itk
{
namespace unet_detail
{

/** \class TileBatchRunner
 * \brief Runs tiles through the network in batches: gathers each tile's normalised input with its context (mirrored
 * or constant outside the image), adds its flipped copies, runs full batches through UNetModel, averages the copies
 * back, and hands each tile's class probabilities on, in the order the tiles were added. Reports a ProgressEvent per
 * tile run and stops with ProcessAborted when its owner is asked to abort (checked after each batch).
 *
 * Running out of memory in a forward pass (MemoryAllocationError from UNetModel, std::bad_alloc) is not the end: the
 * runner warns through its owner and retries with half as many tile copies per forward pass, down to one, and then,
 * for a valid network (a positive border, tiles not blended), runs each copy as pieces of about half the edge, down
 * to the smallest valid edge that is at least the downsampling factor. The pieces start at multiples of the factor
 * from the tile's first input voxel and end at valid edges, so they lie on the tile's pooling grid and give the
 * tile's values to float rounding: the result is the one a smaller TileSize or TilesPerBatch gives. What it reduced
 * stays reduced for the rest of the update. When nothing is left to reduce, the error goes on.
 *
 * \sa UNetSegmentationImageFilter
 * \ingroup UNetSegmentation
 */
template <typename TInputImage>
class TileBatchRunner
{
public:
  /** Spatial dimension of the input image. */
  static constexpr unsigned int ImageDimension = TInputImage::ImageDimension;
  /** The segmentation filter's tile grid, and its tile indices, regions, indices and sizes. */
  /** @{ */
  using GridType = UNetTileGrid<ImageDimension>;
  using TileIndexType = typename GridType::TileIndexType;
  using RegionType = typename GridType::RegionType;
  using IndexType = typename RegionType::IndexType;
  using SizeType = typename GridType::SizeType;
  /** @} */
  /** The type of a component of an input voxel. */
  using InputValueType = typename NumericTraits<typename TInputImage::PixelType>::ValueType;
  /** What fills a tile's context outside the image: Mirror or Constant. */
  using BoundaryConditionEnum = UNetSegmentationImageFilterEnums::BoundaryCondition;
  /** One flag per axis: whether test-time augmentation flips along it. */
  using FlipAxesType = typename TileFlips<ImageDimension>::FlipAxesType;
  /** Receives a tile and its probabilities: classes x tile voxels, class by class, x fastest. */
  using TileDone = std::function<void(const TileIndexType &, const float *)>;

  /** The segmentation filter's settings that shape a tile's network input, and the batch size. */
  struct Settings
  {
    /** The filter's Normalization, BoundaryCondition, BoundaryConstant and TestTimeFlipAxes. */
    /** @{ */
    UNetNormalization     Normalization{};
    BoundaryConditionEnum BoundaryCondition{ BoundaryConditionEnum::Mirror };
    double                BoundaryConstant{ 0.0 };
    FlipAxesType          FlipAxes{ FlipAxesType::Filled(false) };
    /** @} */
    /** Tiles a forward pass takes, each with its flipped copies. */
    unsigned int BatchSize{ 1 };
  };

  /** `geometry`: the model's network as the grid was planned for (a model another thread loads again with another
   * network fails the next batch, rather than writing past the buffers sized here); `tilesToRun`: how many tiles this
   * update will add, for the progress; `owner`: whose progress and abort flag. */
  TileBatchRunner(const UNetModel * model, const UNetNetworkGeometry & geometry, const GridType & grid,
                  const Settings & settings, ProcessObject * owner, SizeValueType tilesToRun)
    : m_Model(model)
    , m_Geometry(geometry)
    , m_Grid(grid)
    , m_Settings(settings)
    , m_Flips(settings.FlipAxes)
    , m_Owner(owner)
    , m_TilesToRun(tilesToRun)
    , m_InputValues(geometry.InputChannels * RegionType(grid.GetInputTileSize()).GetNumberOfPixels())
    , m_OutputValues(geometry.Classes * RegionType(grid.GetTileSize()).GetNumberOfPixels())
    , m_CopiesPerPass(settings.BatchSize * m_Flips.GetNumberOfCopies())
    , m_PieceSize(grid.GetTileSize())
  {
    const size_t copies = m_Flips.GetNumberOfCopies();
    m_BatchInput.resize(settings.BatchSize * copies * m_InputValues);
    m_BatchProbabilities.resize(settings.BatchSize * copies * m_OutputValues);
    m_Averaged.resize(copies > 1 ? m_OutputValues : 0);
  }

  /** Gathers `tile`'s input from `input` (buffered over what the tile reads); runs the batch once it is full. */
  void
  Add(const TInputImage * input, const TileIndexType & tile, const TileDone & done)
  {
    const unsigned int copies = m_Flips.GetNumberOfCopies();
    float *            tileInput = m_BatchInput.data() + m_BatchTiles.size() * copies * m_InputValues;
    this->GatherInputTile(input, m_Grid.GetTileRegion(tile), tileInput);
    for (unsigned int copy = 1; copy < copies; ++copy)
    {
      m_Flips.Flip(
        copy, tileInput, m_Grid.GetInputTileSize(), m_Geometry.InputChannels, tileInput + copy * m_InputValues);
    }
    m_BatchTiles.push_back(tile);
    if (m_BatchTiles.size() == m_Settings.BatchSize)
    {
      this->Flush(done);
    }
  }

  /** Runs the tiles gathered so far. */
  void
  Flush(const TileDone & done)
  {
    if (m_BatchTiles.empty())
    {
      return;
    }
    const unsigned int copies = m_Flips.GetNumberOfCopies();
    this->RunCopies(static_cast<unsigned int>(m_BatchTiles.size() * copies));
    for (size_t b = 0; b < m_BatchTiles.size(); ++b)
    {
      const float * probabilities = m_BatchProbabilities.data() + b * copies * m_OutputValues;
      if (copies > 1)
      {
        m_Flips.Average(probabilities, m_Grid.GetTileSize(), m_Geometry.Classes, m_Averaged.data());
        probabilities = m_Averaged.data();
      }
      done(m_BatchTiles[b], probabilities);
      ++m_TilesRun;
      m_Owner->UpdateProgress(static_cast<float>(m_TilesRun) / static_cast<float>(m_TilesToRun + 1));
    }
    m_BatchTiles.clear();
    if (m_Owner->GetAbortGenerateData())
    {
      ProcessAborted aborted(__FILE__, __LINE__);
      aborted.SetDescription(std::string(m_Owner->GetNameOfClass()) + " was aborted after " +
                             std::to_string(m_TilesRun) + " of " + std::to_string(m_TilesToRun) + " tiles.");
      throw aborted;
    }
  }

  /** Fills `tileBuffer` (channels first, x fastest) with the normalised input of `tile`'s output region grown by the
   * border. Throws where a value is not finite, as read or once normalised. */
  void
  GatherInputTile(const TInputImage * input, const RegionType & tile, float * tileBuffer) const
  {
    RegionType tileInput = tile;
    tileInput.PadByRadius(m_Grid.GetBorder());
    const auto          readOffsets = this->ReadOffsets(input, tileInput);
    const unsigned int  channels = input->GetNumberOfComponentsPerPixel();
    const auto *        source = reinterpret_cast<const InputValueType *>(input->GetBufferPointer());
    const SizeValueType tileVoxels = tileInput.GetNumberOfPixels();
    const SizeValueType lineLength = tileInput.GetSize(0);
    std::vector<float>  scale(channels);
    std::vector<float>  shift(channels);
    for (unsigned int c = 0; c < channels; ++c)
    {
      scale[c] = static_cast<float>(m_Settings.Normalization.GetScale(c));
      shift[c] = static_cast<float>(m_Settings.Normalization.GetShift(c));
    }
    float * lineOut = tileBuffer;
    for (const IndexType & lineStart : LineStarts(tileInput))
    {
      IndexValueType lineOffset = 0;
      bool           lineIsConstant = false;
      for (unsigned int axis = 1; axis < ImageDimension; ++axis)
      {
        const IndexValueType offset = readOffsets[axis][lineStart[axis] - tileInput.GetIndex(axis)];
        lineIsConstant = lineIsConstant || offset < 0;
        lineOffset += offset;
      }
      for (unsigned int c = 0; c < channels; ++c)
      {
        float * out = lineOut + c * tileVoxels;
        for (SizeValueType i = 0; i < lineLength; ++i)
        {
          const bool   constant = lineIsConstant || readOffsets[0][i] < 0;
          const double value = constant ? m_Settings.BoundaryConstant
                                        : static_cast<double>(source[(lineOffset + readOffsets[0][i]) * channels + c]);
          out[i] = static_cast<float>(m_Settings.Normalization.Clip(value)) * scale[c] + shift[c];
          if (!std::isfinite(out[i]))
          {
            IndexType where = lineStart;
            where[0] += static_cast<IndexValueType>(i);
            ThrowNonFinite(value, out[i], where);
          }
        }
      }
      lineOut += lineLength;
    }
  }

private:
  /** Runs the first `count` tile copies of the batch, `m_CopiesPerPass` at a time, reducing the pass on running out
   * of memory. */
  void
  RunCopies(unsigned int count)
  {
    for (unsigned int first = 0; first < count;)
    {
      const unsigned int pass = std::min(m_CopiesPerPass, count - first);
      try
      {
        this->RunPass(first, pass);
        first += pass;
      }
      catch (const MemoryAllocationError & error)
      {
        if (!this->ReducePass(pass, error.GetDescription()))
        {
          throw;
        }
      }
      catch (const std::bad_alloc &)
      {
        if (!this->ReducePass(pass, "std::bad_alloc"))
        {
          throw;
        }
      }
    }
  }

  /** One forward pass of the batch's tile copies `firstCopy` to `firstCopy + count - 1`, or, once pieces are smaller
   * than the tile, the one copy piece by piece. A non-finite output is an exception naming its tile and voxel. */
  void
  RunPass(unsigned int firstCopy, unsigned int count)
  {
    const float *    input = m_BatchInput.data() + firstCopy * m_InputValues;
    float *          probabilities = m_BatchProbabilities.data() + firstCopy * m_OutputValues;
    const RegionType tileOutput(m_Grid.GetTileSize());
    const SizeType   inputTileSize = m_Grid.GetInputTileSize();
    if (m_PieceSize == m_Grid.GetTileSize())
    {
      try
      {
        m_Model->PredictProbabilities(
          m_Geometry, input, count, UNetModel::TileSizeType(inputTileSize.begin(), inputTileSize.end()), probabilities);
      }
      catch (const UNetNonFiniteOutputError & error)
      {
        this->ThrowNonFiniteOutput(error, firstCopy, tileOutput);
      }
      return;
    }
    RegionType tileInput = tileOutput;
    tileInput.PadByRadius(m_Grid.GetBorder());
    RegionType pieceInput(m_PieceSize);
    pieceInput.PadByRadius(m_Grid.GetBorder());
    const UNetModel::TileSizeType pieceInputSize(pieceInput.GetSize().begin(), pieceInput.GetSize().end());
    std::vector<float>            pieceValues(m_Geometry.InputChannels * pieceInput.GetNumberOfPixels());
    std::vector<float>            pieceProbabilities(m_Geometry.Classes * RegionType(m_PieceSize).GetNumberOfPixels());
    for (const IndexType & start : this->PieceStarts())
    {
      RegionType pieceOutput(start, m_PieceSize);
      pieceInput = pieceOutput;
      pieceInput.PadByRadius(m_Grid.GetBorder());
      CopyBlockBetweenBuffers(input, tileInput, pieceValues.data(), pieceInput, pieceInput, m_Geometry.InputChannels);
      try
      {
        m_Model->PredictProbabilities(m_Geometry, pieceValues.data(), 1, pieceInputSize, pieceProbabilities.data());
      }
      catch (const UNetNonFiniteOutputError & error)
      {
        this->ThrowNonFiniteOutput(error, firstCopy, pieceOutput);
      }
      CopyBlockBetweenBuffers(
        pieceProbabilities.data(), pieceOutput, probabilities, tileOutput, pieceOutput, m_Geometry.Classes);
    }
  }

  /** The first output index of every piece of the tile (the tile's output starting at 0): per axis, steps of the
   * largest multiple of the downsampling factor within a piece, the last piece ending at the tile's edge. */
  std::vector<IndexType>
  PieceStarts() const
  {
    SizeType                                 counts;
    std::vector<std::vector<IndexValueType>> startsAlong(ImageDimension);
    for (unsigned int axis = 0; axis < ImageDimension; ++axis)
    {
      const SizeValueType edge = m_Grid.GetTileSize()[axis];
      const SizeValueType piece = m_PieceSize[axis];
      const SizeValueType factor = m_Geometry.DownsamplingFactor[axis];
      for (SizeValueType start = 0; start + piece < edge; start += piece / factor * factor)
      {
        startsAlong[axis].push_back(static_cast<IndexValueType>(start));
      }
      startsAlong[axis].push_back(static_cast<IndexValueType>(edge - piece));
      counts[axis] = startsAlong[axis].size();
    }
    std::vector<IndexType> starts;
    for (const IndexType & which : ImageRegionIndexRange<ImageDimension>(RegionType(counts)))
    {
      IndexType start;
      for (unsigned int axis = 0; axis < ImageDimension; ++axis)
      {
        start[axis] = startsAlong[axis][which[axis]];
      }
      starts.push_back(start);
    }
    return starts;
  }

  /** After a pass of `pass` copies ran out of memory (`reason`): halves the copies per pass or, at one, the pieces'
   * edges, and warns; false when neither can be reduced. */
  bool
  ReducePass(unsigned int pass, const std::string & reason)
  {
    std::ostringstream change;
    if (pass > 1)
    {
      m_CopiesPerPass = pass / 2;
      change << "running " << m_CopiesPerPass << " tile copies per forward pass instead of " << pass;
    }
    else
    {
      const SizeType smaller = this->SmallerPieceSize();
      if (smaller == m_PieceSize)
      {
        return false;
      }
      change << "running each tile of " << m_Grid.GetTileSize() << " output voxels as pieces of " << smaller
             << " (on the network's pooling grid: the values of tiles of that size) instead of "
             << (m_PieceSize == m_Grid.GetTileSize() ? "whole" : "pieces of ");
      if (m_PieceSize != m_Grid.GetTileSize())
      {
        change << m_PieceSize;
      }
      m_PieceSize = smaller;
    }
    if (Object::GetGlobalWarningDisplay())
    {
      std::ostringstream warning;
      warning << "WARNING: In " __FILE__ ", line " << __LINE__ << "\n"
              << m_Owner->GetNameOfClass() << " (" << m_Owner << "): Out of memory in a forward pass (" << reason
              << "); " << change.str() << " for the rest of this update.\n\n";
      OutputWindowDisplayWarningText(warning.str().c_str());
    }
    return true;
  }

  /** About half the pieces' edge per axis, on a valid edge and not below the downsampling factor (pieces must step
   * by it); the pieces' size unchanged where the network is not valid or the tiles are blended. */
  SizeType
  SmallerPieceSize() const
  {
    SizeType smaller = m_PieceSize;
    if (m_Grid.GetBlend() ||
        std::all_of(m_Geometry.Border.begin(), m_Geometry.Border.end(), [](SizeValueType b) { return b == 0; }))
    {
      return smaller;
    }
    for (unsigned int axis = 0; axis < ImageDimension; ++axis)
    {
      const SizeValueType floor = m_Geometry.GetValidOutputSizeAtLeast(axis, m_Geometry.DownsamplingFactor[axis]);
      const SizeValueType half = m_Geometry.GetValidOutputSizeAtMost(axis, m_PieceSize[axis] / 2);
      smaller[axis] = std::min(m_PieceSize[axis], std::max(floor, half));
    }
    return smaller;
  }

  /** Per axis, the buffer offset each position of `tileInput` reads (a multiple of the buffer's stride), or -1 for
   * the constant. */
  std::vector<std::vector<IndexValueType>>
  ReadOffsets(const TInputImage * input, const RegionType & tileInput) const
  {
    const RegionType &                          buffered = input->GetBufferedRegion();
    const auto &                                bufferStrides = input->GetOffsetTable();
    const UNetBoundaryCondition<ImageDimension> boundary(m_Settings.BoundaryCondition, m_Grid.GetImageRegion());
    std::vector<std::vector<IndexValueType>>    readOffsets(ImageDimension);
    for (unsigned int axis = 0; axis < ImageDimension; ++axis)
    {
      for (SizeValueType j = 0; j < tileInput.GetSize(axis); ++j)
      {
        IndexValueType x = 0;
        if (!boundary.MapIndex(axis, tileInput.GetIndex(axis) + static_cast<IndexValueType>(j), x))
        {
          readOffsets[axis].push_back(-1);
          continue;
        }
        if (x < buffered.GetIndex(axis) || x > buffered.GetUpperIndex()[axis])
        {
          itkGenericExceptionMacro("Input index " << x << " along axis " << axis << " is outside the buffered region "
                                                  << buffered
                                                  << "; the input was not updated for the requested region.");
        }
        readOffsets[axis].push_back((x - buffered.GetIndex(axis)) * static_cast<IndexValueType>(bufferStrides[axis]));
      }
    }
    return readOffsets;
  }

  /** Names the tile, class and voxel of a non-finite network output, found by a pass that began at the batch's tile
   * copy `firstCopy` and computed `computed` of each copy's output (the tile's output starting at 0: all of it, or a
   * piece). */
  [[noreturn]] void
  ThrowNonFiniteOutput(const UNetNonFiniteOutputError & error, unsigned int firstCopy,
                       const RegionType & computed) const
  {
    const unsigned int    copies = m_Flips.GetNumberOfCopies();
    const TileIndexType & tile = m_BatchTiles[(firstCopy + error.GetBatchTile()) / copies];
    IndexType             where = m_Grid.GetTileRegion(tile).GetIndex();
    SizeValueType         rest = error.GetVoxel();
    for (unsigned int axis = 0; axis < ImageDimension; ++axis)
    {
      where[axis] += computed.GetIndex(axis) + static_cast<IndexValueType>(rest % computed.GetSize(axis));
      rest /= computed.GetSize(axis);
    }
    itkGenericExceptionMacro("The network's output is not finite in output channel "
                             << error.GetChannel() << " at output index " << where << " of tile " << tile
                             << (copies > 1 ? " (a flipped copy)" : "") << ": " << error.GetDescription()
                             << " Check the network and its input's normalisation.");
  }

  [[noreturn]] static void
  ThrowNonFinite(double value, float normalized, const IndexType & where)
  {
    if (!std::isfinite(value))
    {
      itkGenericExceptionMacro("The input holds a non-finite value (" << value << ") at or mirrored from index "
                                                                      << where << '.');
    }
    itkGenericExceptionMacro("The input value " << value << " at or mirrored from index " << where
                                                << " becomes non-finite (" << normalized
                                                << ") once normalised; check the normalisation.");
  }

  const UNetModel *          m_Model;
  UNetNetworkGeometry        m_Geometry;
  GridType                   m_Grid;
  Settings                   m_Settings;
  TileFlips<ImageDimension>  m_Flips;
  ProcessObject *            m_Owner;
  SizeValueType              m_TilesToRun;
  SizeValueType              m_TilesRun{ 0 };
  SizeValueType              m_InputValues;
  SizeValueType              m_OutputValues;
  std::vector<float>         m_BatchInput{};
  std::vector<float>         m_BatchProbabilities{};
  std::vector<float>         m_Averaged{};
  std::vector<TileIndexType> m_BatchTiles{};
  unsigned int               m_CopiesPerPass;
  SizeType                   m_PieceSize;
};

} // end namespace unet_detail
} // end namespace itk

#endif // itkUNetTileBatchRunner_h
