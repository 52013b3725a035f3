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
#include "itkProcessObject.h"
#include "itkUNetBoundaryCondition.h"
#include "itkUNetModel.h"
#include "itkUNetNormalization.h"
#include "itkUNetRegionLines.h"
#include "itkUNetTileFlips.h"
#include "itkUNetTileGrid.h"

#include <cmath>
#include <functional>
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
 * \sa UNetSegmentationImageFilter
 * \ingroup UNetSegmentation
 */
template <typename TInputImage>
class TileBatchRunner
{
public:
  static constexpr unsigned int ImageDimension = TInputImage::ImageDimension;
  using GridType = UNetTileGrid<ImageDimension>;
  using TileIndexType = typename GridType::TileIndexType;
  using RegionType = typename GridType::RegionType;
  using IndexType = typename RegionType::IndexType;
  using SizeType = typename GridType::SizeType;
  using InputValueType = typename NumericTraits<typename TInputImage::PixelType>::ValueType;
  using BoundaryConditionEnum = UNetSegmentationImageFilterEnums::BoundaryCondition;
  using FlipAxesType = typename UNetTileFlips<ImageDimension>::FlipAxesType;
  /** Receives a tile and its probabilities: classes x tile voxels, class by class, x fastest. */
  using TileDone = std::function<void(const TileIndexType &, const float *)>;

  struct Settings
  {
    UNetNormalization     Normalization{};
    BoundaryConditionEnum BoundaryCondition{ BoundaryConditionEnum::Mirror };
    double                BoundaryConstant{ 0.0 };
    FlipAxesType          FlipAxes{ FlipAxesType::Filled(false) };
    unsigned int          BatchSize{ 1 };
  };

  /** `tilesToRun`: how many tiles this update will add, for the progress; `owner`: whose progress and abort flag. */
  TileBatchRunner(const UNetModel * model, const GridType & grid, const Settings & settings, ProcessObject * owner,
                  SizeValueType tilesToRun)
    : m_Model(model)
    , m_Grid(grid)
    , m_Settings(settings)
    , m_Flips(settings.FlipAxes)
    , m_Owner(owner)
    , m_TilesToRun(tilesToRun)
    , m_InputValues(model->GetNumberOfInputChannels() * RegionType(grid.GetInputTileSize()).GetNumberOfPixels())
    , m_OutputValues(model->GetNumberOfClasses() * RegionType(grid.GetTileSize()).GetNumberOfPixels())
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
      m_Flips.Flip(copy,
                   tileInput,
                   m_Grid.GetInputTileSize(),
                   m_Model->GetNumberOfInputChannels(),
                   tileInput + copy * m_InputValues);
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
    const SizeType     inputTileSize = m_Grid.GetInputTileSize();
    m_Model->PredictProbabilities(m_BatchInput.data(),
                                  static_cast<unsigned int>(m_BatchTiles.size() * copies),
                                  UNetModel::TileSizeType(inputTileSize.begin(), inputTileSize.end()),
                                  m_BatchProbabilities.data());
    for (size_t b = 0; b < m_BatchTiles.size(); ++b)
    {
      const float * probabilities = m_BatchProbabilities.data() + b * copies * m_OutputValues;
      if (copies > 1)
      {
        m_Flips.Average(probabilities, m_Grid.GetTileSize(), m_Model->GetNumberOfClasses(), m_Averaged.data());
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
    for (const IndexType & lineStart : UNetLineStarts(tileInput))
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
          out[i] = static_cast<float>(value) * scale[c] + shift[c];
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

  const UNetModel *             m_Model;
  GridType                      m_Grid;
  Settings                      m_Settings;
  UNetTileFlips<ImageDimension> m_Flips;
  ProcessObject *               m_Owner;
  SizeValueType                 m_TilesToRun;
  SizeValueType                 m_TilesRun{ 0 };
  SizeValueType                 m_InputValues;
  SizeValueType                 m_OutputValues;
  std::vector<float>            m_BatchInput{};
  std::vector<float>            m_BatchProbabilities{};
  std::vector<float>            m_Averaged{};
  std::vector<TileIndexType>    m_BatchTiles{};
};

} // end namespace unet_detail
} // end namespace itk

#endif // itkUNetTileBatchRunner_h
