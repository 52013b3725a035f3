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
#ifndef itkUNetSegmentationImageFilter_hxx
#define itkUNetSegmentationImageFilter_hxx

#include "itkUNetSegmentationImageFilter.h"

#include "itkMath.h"
#include "itkUNetTileAccumulator.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <sstream>

namespace itk
{

template <typename TInputImage, typename TOutputImage>
UNetSegmentationImageFilter<TInputImage, TOutputImage>::UNetSegmentationImageFilter()
  : m_Model(UNetModel::New())
{
  m_Model->SetImageDimension(ImageDimension);
  this->SetNumberOfRequiredInputs(1);
  this->ProcessObject::SetOutput("Probabilities", this->MakeOutput("Probabilities"));
}

template <typename TInputImage, typename TOutputImage>
DataObject::Pointer
UNetSegmentationImageFilter<TInputImage, TOutputImage>::MakeOutput(const DataObjectIdentifierType & name)
{
  if (name == "Probabilities")
  {
    return ProbabilityImageType::New().GetPointer();
  }
  return Superclass::MakeOutput(name);
}

template <typename TInputImage, typename TOutputImage>
auto
UNetSegmentationImageFilter<TInputImage, TOutputImage>::GetProbabilityOutput() -> ProbabilityImageType *
{
  return itkDynamicCastInDebugMode<ProbabilityImageType *>(this->ProcessObject::GetOutput("Probabilities"));
}

template <typename TInputImage, typename TOutputImage>
auto
UNetSegmentationImageFilter<TInputImage, TOutputImage>::GetProbabilityOutput() const -> const ProbabilityImageType *
{
  return itkDynamicCastInDebugMode<const ProbabilityImageType *>(this->ProcessObject::GetOutput("Probabilities"));
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetModelFileName(const std::string & fileName)
{
  if (fileName != m_Model->GetFileName())
  {
    m_Model->SetFileName(fileName);
    this->Modified();
  }
}

template <typename TInputImage, typename TOutputImage>
std::string
UNetSegmentationImageFilter<TInputImage, TOutputImage>::GetModelFileName() const
{
  return m_Model->GetFileName();
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetModel(UNetModel * model)
{
  if (model == nullptr)
  {
    itkExceptionMacro("The model must not be null.");
  }
  if (model != m_Model.GetPointer())
  {
    m_Model = model;
    this->Modified();
  }
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetDevice(const std::string & device)
{
  if (device != m_Model->GetDevice())
  {
    m_Model->SetDevice(device);
    this->Modified();
  }
}

template <typename TInputImage, typename TOutputImage>
std::string
UNetSegmentationImageFilter<TInputImage, TOutputImage>::GetDevice() const
{
  return m_Model->GetDevice();
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetNumberOfTorchThreads(unsigned int numberOfThreads)
{
  // Threads change neither the output nor the pipeline's need to update.
  m_Model->SetNumberOfThreads(numberOfThreads);
}

template <typename TInputImage, typename TOutputImage>
unsigned int
UNetSegmentationImageFilter<TInputImage, TOutputImage>::GetNumberOfTorchThreads() const
{
  return m_Model->GetNumberOfThreads();
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetNormalizationMean(const std::vector<double> & mean)
{
  if (mean != m_NormalizationMean)
  {
    m_NormalizationMean = mean;
    this->Modified();
  }
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetNormalizationStandardDeviation(
  const std::vector<double> & standardDeviation)
{
  if (standardDeviation != m_NormalizationStandardDeviation)
  {
    m_NormalizationStandardDeviation = standardDeviation;
    this->Modified();
  }
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetNormalizationShiftScale(double shift, double scale)
{
  if (scale == 0.0)
  {
    itkExceptionMacro("The normalisation scale must not be 0.");
  }
  this->SetNormalizationMean({ -shift });
  this->SetNormalizationStandardDeviation({ 1.0 / scale });
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::VerifyPreconditions() ITKv5_CONST
{
  Superclass::VerifyPreconditions();
  if (std::string(m_Model->GetFileName()).empty())
  {
    itkExceptionMacro("ModelFileName is not set.");
  }
  for (const double standardDeviation : m_NormalizationStandardDeviation)
  {
    if (!(standardDeviation > 0.0) || !std::isfinite(standardDeviation))
    {
      itkExceptionMacro("Every NormalizationStandardDeviation must be positive and finite; got " << standardDeviation
                                                                                                 << '.');
    }
  }
  if (!(m_MemoryBudget > 0.0))
  {
    itkExceptionMacro("MemoryBudget must be positive; got " << m_MemoryBudget << '.');
  }
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetGenerateProbabilities(bool generate)
{
  if (generate == m_GenerateProbabilities)
  {
    return;
  }
  m_GenerateProbabilities = generate;
  if (generate)
  {
    this->ProcessObject::SetOutput("Probabilities", this->MakeOutput("Probabilities"));
  }
  else
  {
    this->ProcessObject::RemoveOutput("Probabilities");
  }
  this->Modified();
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetFreezeModel(bool freeze)
{
  if (freeze != m_Model->GetFreeze())
  {
    m_Model->SetFreeze(freeze);
    this->Modified();
  }
}

template <typename TInputImage, typename TOutputImage>
bool
UNetSegmentationImageFilter<TInputImage, TOutputImage>::GetFreezeModel() const
{
  return m_Model->GetFreeze();
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::GenerateOutputInformation()
{
  Superclass::GenerateOutputInformation();
  this->ConfigureTiling();
  if (ProbabilityImageType * probabilities = this->GetProbabilityOutput())
  {
    probabilities->SetNumberOfComponentsPerPixel(m_Model->GetNumberOfClasses());
  }
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::ConfigureTiling()
{
  const InputImageType * input = this->GetInput();
  if (m_Model->GetImageDimension() != 0 && m_Model->GetImageDimension() != ImageDimension)
  {
    itkExceptionMacro("The model is set up for " << m_Model->GetImageDimension() << "-D images, but the filter is "
                                                 << ImageDimension << "-D.");
  }
  m_Model->SetImageDimension(ImageDimension);
  m_Model->Load();

  const unsigned int channels = input->GetNumberOfComponentsPerPixel();
  if (channels != m_Model->GetNumberOfInputChannels())
  {
    itkExceptionMacro("The input image has " << channels << " component(s) per pixel, but the network in \""
                                             << m_Model->GetFileName() << "\" takes "
                                             << m_Model->GetNumberOfInputChannels() << " channel(s).");
  }
  const std::vector<double> * const normalization[] = { &m_NormalizationMean, &m_NormalizationStandardDeviation };
  for (const std::vector<double> * values : normalization)
  {
    if (values->size() > 1 && values->size() != channels)
    {
      itkExceptionMacro("The normalisation has " << values->size() << " values for " << channels
                                                 << " channels; give one value or one per channel.");
    }
  }
  const unsigned int classes = m_Model->GetNumberOfClasses();
  if (classes - 1 > static_cast<unsigned long long>(NumericTraits<OutputPixelType>::max()))
  {
    itkExceptionMacro("The network has " << classes << " classes, more than the label pixel type can hold.");
  }
  const RegionType image = input->GetLargestPossibleRegion();
  for (unsigned int axis = 0; axis < ImageDimension; ++axis)
  {
    this->VerifyTileEdge(axis, image.GetSize(axis));
  }
  const SizeType tileSize = this->ChooseTileSize(image);
  SizeType       factor;
  SizeType       border;
  for (unsigned int axis = 0; axis < ImageDimension; ++axis)
  {
    factor[axis] = m_Model->GetDownsamplingFactor(axis);
    border[axis] = m_Model->GetBorder(axis);
  }
  m_TileGrid = TileGridType(image, tileSize, m_TileOverlap, factor, border);

  const double budget = m_MemoryBudget * 1024.0 * 1024.0;
  if (m_TilesPerBatch > 0)
  {
    m_BatchSize = m_TilesPerBatch;
  }
  else
  {
    // As many tiles a batch as the budget holds, at most 64 and no more than the image has.
    const SizeValueType tiles = RegionType(m_TileGrid.GetNumberOfTiles()).GetNumberOfPixels();
    m_BatchSize = 1;
    while (m_BatchSize < std::min<SizeValueType>(64, tiles) &&
           this->EstimateWorkingMemory(image, tileSize, m_BatchSize + 1) <= budget)
    {
      ++m_BatchSize;
    }
  }
  const double batchBytes = this->EstimateWorkingMemory(image, tileSize, m_BatchSize, true);
  if (batchBytes > budget)
  {
    MemoryAllocationError error(__FILE__, __LINE__, "", ITK_LOCATION);
    std::ostringstream    message;
    message << "A batch of " << m_BatchSize << " tile(s) of " << tileSize << " output voxels needs about "
            << batchBytes / (1024.0 * 1024.0) << " MB, more than MemoryBudget (" << m_MemoryBudget
            << " MB); choose a smaller TileSize or TilesPerBatch, or raise MemoryBudget.";
    error.SetDescription(message.str());
    throw error;
  }
  m_EstimatedWorkingMemory = this->EstimateWorkingMemory(image, tileSize, m_BatchSize) / (1024.0 * 1024.0);
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::VerifyTileEdge(unsigned int axis, SizeValueType extent) const
{
  const SizeValueType edge = m_TileSize[axis];
  if (edge == 0)
  {
    return;
  }
  if (m_TileOverlap >= edge)
  {
    itkExceptionMacro("The tile overlap (" << m_TileOverlap << ") must be smaller than the tile edge (" << edge
                                           << ").");
  }
  if (!m_Model->IsValidOutputSize(axis, edge))
  {
    itkExceptionMacro("TileSize[" << axis << "] = " << edge << " is not valid for the network in \""
                                  << m_Model->GetFileName() << "\"; the nearest valid tile edges are "
                                  << m_Model->GetValidOutputSizeAtMost(axis, edge) << " and "
                                  << m_Model->GetValidOutputSizeAtLeast(axis, edge)
                                  << " (valid edges: " << m_Model->GetMinimumOutputSize(axis) << " + k * "
                                  << m_Model->GetDownsamplingFactor(axis) << ").");
  }
  const SizeValueType factor = m_Model->GetDownsamplingFactor(axis);
  if (edge < extent && TileGridType::AlignedStride(edge, m_TileOverlap, factor) == 0)
  {
    itkExceptionMacro(
      "TileSize[" << axis << "] = " << edge << " cannot be aligned to the network's pooling grid: "
                  << "tiles must advance by a multiple of its downsampling factor (" << factor
                  << ") and overlap by at least TileOverlap (" << m_TileOverlap << "), so an edge must be at least "
                  << m_TileOverlap + factor << "; the nearest tile edges that work are "
                  << m_Model->GetValidOutputSizeAtLeast(axis, m_TileOverlap + factor) << ", or "
                  << m_Model->GetValidOutputSizeAtLeast(axis, extent) << " (one tile across the image).");
  }
}

template <typename TInputImage, typename TOutputImage>
double
UNetSegmentationImageFilter<TInputImage, TOutputImage>::EstimateWorkingMemory(const RegionType & image,
                                                                              const SizeType &   tileSize,
                                                                              unsigned int       batchSize,
                                                                              bool               batchOnly) const
{
  const double            channels = m_Model->GetNumberOfInputChannels();
  const double            classes = m_Model->GetNumberOfClasses();
  UNetModel::TileSizeType inputTileSize(ImageDimension);
  double                  inputTileVoxels = 1.0;
  double                  outputTileVoxels = 1.0;
  for (unsigned int axis = 0; axis < ImageDimension; ++axis)
  {
    inputTileSize[axis] = tileSize[axis] + 2 * m_Model->GetBorder(axis);
    inputTileVoxels *= static_cast<double>(inputTileSize[axis]);
    outputTileVoxels *= static_cast<double>(tileSize[axis]);
  }
  // A batch runs every tile with its flipped copies; averaging the copies takes a double and two float buffers.
  const unsigned int copies = UNetTileFlips<ImageDimension>(m_TestTimeFlipAxes).GetNumberOfCopies();
  double             bytes = m_Model->GetEstimatedForwardBytes(batchSize * copies, inputTileSize) +
                 batchSize * copies * (channels * inputTileVoxels + classes * outputTileVoxels) * sizeof(float);
  if (copies > 1)
  {
    bytes += classes * outputTileVoxels * (sizeof(double) + 2 * sizeof(float));
  }
  if (batchOnly)
  {
    return bytes;
  }
  const bool blend = m_TileOverlap > 0; // as the tile grid decides
  if (blend)
  {
    bytes += outputTileVoxels * sizeof(float); // the blending weights
  }
  // A layer of tiles across the image, one tile thick along the last axis, which ITK's streaming splits first: a
  // piece grows by up to a layer at each end, and keeps a copy of the voxels it shares with the next piece.
  constexpr unsigned int last = ImageDimension - 1;
  double                 layerOutputVoxels = static_cast<double>(tileSize[last]);
  double                 layerInputVoxels = static_cast<double>(std::min(inputTileSize[last], image.GetSize(last)));
  double                 layerTiles = 1.0;
  for (unsigned int axis = 0; axis < last; ++axis)
  {
    layerOutputVoxels *= static_cast<double>(image.GetSize(axis));
    layerInputVoxels *= static_cast<double>(image.GetSize(axis));
    layerTiles *= static_cast<double>(this->NumberOfTilesAlong(axis, image.GetSize(axis), tileSize[axis]));
  }
  const double accumulatorBytes = classes * sizeof(float) + sizeof(float); // blended sums and weight sums
  const double outputVoxelBytes =
    sizeof(OutputPixelType) + (m_GenerateProbabilities ? classes * sizeof(float) : 0.0) +
    (blend ? accumulatorBytes - (m_GenerateProbabilities ? classes * sizeof(float) : 0.0) : 0.0);
  bytes += 3.0 * layerOutputVoxels * outputVoxelBytes;
  bytes += 2.0 * layerInputVoxels * channels * sizeof(InputValueType);
  if (blend)
  {
    // The overlapping tiles at both ends of a piece, kept for the next one.
    bytes += 2.0 * layerTiles * classes * outputTileVoxels * sizeof(float);
  }
  return bytes;
}

template <typename TInputImage, typename TOutputImage>
SizeValueType
UNetSegmentationImageFilter<TInputImage, TOutputImage>::NumberOfTilesAlong(unsigned int axis, SizeValueType extent,
                                                                           SizeValueType edge) const
{
  const SizeValueType stride = TileGridType::AlignedStride(edge, m_TileOverlap, m_Model->GetDownsamplingFactor(axis));
  if (stride == 0)
  {
    return edge >= extent ? 1 : 0;
  }
  return TileGridType::NumberOfTilesAlong(extent, edge, stride);
}

template <typename TInputImage, typename TOutputImage>
auto
UNetSegmentationImageFilter<TInputImage, TOutputImage>::ChooseTileSize(const RegionType & image) const -> SizeType
{
  const double       budget = m_MemoryBudget * 1024.0 * 1024.0;
  const unsigned int batch = std::max(m_TilesPerBatch, 1u);

  // Per axis, the candidate edges (ascending) and the network input they cost along it: the smallest valid edge
  // for each number of tiles, since a larger one with as many tiles costs more input and memory for nothing.
  std::vector<SizeValueType> candidates[ImageDimension];
  std::vector<double>        inputAlong[ImageDimension];
  SizeType                   size;
  for (unsigned int axis = 0; axis < ImageDimension; ++axis)
  {
    const SizeValueType extent = image.GetSize(axis);
    const auto          addCandidate = [&](SizeValueType edge, SizeValueType tiles) {
      candidates[axis].push_back(edge);
      inputAlong[axis].push_back(static_cast<double>(tiles * (edge + 2 * m_Model->GetBorder(axis))));
    };
    if (m_TileSize[axis] != 0)
    {
      addCandidate(m_TileSize[axis], this->NumberOfTilesAlong(axis, extent, m_TileSize[axis]));
    }
    else
    {
      const SizeValueType oneTile = m_Model->GetValidOutputSizeAtLeast(axis, std::max(extent, m_TileOverlap + 1));
      SizeValueType       previousTiles = 0;
      for (SizeValueType edge = m_Model->GetValidOutputSizeAtLeast(axis, m_TileOverlap + 1); edge <= oneTile;
           edge += m_Model->GetDownsamplingFactor(axis))
      {
        const SizeValueType tiles = this->NumberOfTilesAlong(axis, extent, edge);
        if (tiles != 0 && tiles != previousTiles)
        {
          addCandidate(edge, tiles);
          previousTiles = tiles;
        }
      }
    }
    size[axis] = candidates[axis].front();
  }

  // Along the last axis, the cheapest candidate among the first j + 1: memory grows with the edge, so the best edge
  // within the budget is the best one up to the largest that fits, found by bisection.
  constexpr unsigned int last = ImageDimension - 1;
  std::vector<size_t>    bestUpTo(candidates[last].size());
  for (size_t j = 0; j < bestUpTo.size(); ++j)
  {
    bestUpTo[j] = (j == 0 || inputAlong[last][j] < inputAlong[last][bestUpTo[j - 1]]) ? j : bestUpTo[j - 1];
  }
  double   bestInput = std::numeric_limits<double>::infinity();
  SizeType best = size;
  SizeType trial = size;
  // Enumerates the edges of the axes before the last (each stops where even the smallest edges after it overflow the
  // budget, memory growing with every edge).
  const std::function<void(unsigned int, double)> search = [&](unsigned int axis, double input) {
    if (axis == last)
    {
      size_t fits = 0;
      size_t overflows = candidates[last].size();
      while (fits < overflows)
      {
        const size_t middle = (fits + overflows) / 2;
        trial[last] = candidates[last][middle];
        if (this->EstimateWorkingMemory(image, trial, batch) <= budget)
        {
          fits = middle + 1;
        }
        else
        {
          overflows = middle;
        }
      }
      if (fits == 0)
      {
        return;
      }
      const size_t j = bestUpTo[fits - 1];
      if (input * inputAlong[last][j] < bestInput)
      {
        bestInput = input * inputAlong[last][j];
        best = trial;
        best[last] = candidates[last][j];
      }
      return;
    }
    for (size_t i = 0; i < candidates[axis].size(); ++i)
    {
      trial[axis] = candidates[axis][i];
      for (unsigned int after = axis + 1; after < ImageDimension; ++after)
      {
        trial[after] = candidates[after].front();
      }
      if (this->EstimateWorkingMemory(image, trial, batch) > budget)
      {
        return;
      }
      search(axis + 1, input * inputAlong[axis][i]);
    }
  };
  search(0, 1.0);
  if (bestInput == std::numeric_limits<double>::infinity())
  {
    itkWarningMacro("Even the smallest tiles (" << size << " output voxels) need about "
                                                << this->EstimateWorkingMemory(image, size, batch) / (1024.0 * 1024.0)
                                                << " MB of working memory, more than MemoryBudget (" << m_MemoryBudget
                                                << " MB); using them.");
    return size;
  }
  return best;
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::EnlargeOutputRequestedRegion(DataObject * output)
{
  Superclass::EnlargeOutputRequestedRegion(output);
  auto * image = dynamic_cast<ImageBase<ImageDimension> *>(output);
  if (image == nullptr || image->GetRequestedRegion().GetNumberOfPixels() == 0)
  {
    return;
  }
  image->SetRequestedRegion(
    m_TileGrid.GetRegionCompletedBy(m_TileGrid.GetTilesIntersecting(image->GetRequestedRegion())));
}

template <typename TInputImage, typename TOutputImage>
bool
UNetSegmentationImageFilter<TInputImage, TOutputImage>::CanReuse() const
{
  // The pipeline's modification time (the filter's, the model's, the input's and everything upstream) is set before
  // an update and stays behind the time the last update finished as long as nothing changed since.
  const OutputImageType * labels = this->GetOutput();
  if (!m_Reusable.Valid || m_Reusable.Grid != m_TileGrid || labels->GetPipelineMTime() > m_Reusable.Time.GetMTime() ||
      labels->GetBufferedRegion() != m_Reusable.Completed ||
      labels->GetPixelContainer()->Size() < m_Reusable.Completed.GetNumberOfPixels())
  {
    return false;
  }
  const ProbabilityImageType * probabilities = this->GetProbabilityOutput();
  return probabilities == nullptr ||
         (probabilities->GetBufferedRegion() == m_Reusable.Completed &&
          probabilities->GetPixelContainer()->Size() >=
            m_Reusable.Completed.GetNumberOfPixels() * probabilities->GetNumberOfComponentsPerPixel());
}

template <typename TInputImage, typename TOutputImage>
auto
UNetSegmentationImageFilter<TInputImage, TOutputImage>::GetTilesNeeded(const RegionType & outputRegion,
                                                                       const RegionType & reusedRegion) const
  -> std::vector<TileIndexType>
{
  std::vector<TileIndexType> needed;
  for (const TileIndexType & tile :
       ImageRegionIndexRange<ImageDimension>(m_TileGrid.GetTilesIntersecting(outputRegion)))
  {
    RegionType covered = m_TileGrid.GetWrittenRegion(tile);
    covered.Crop(outputRegion);
    if (reusedRegion.GetNumberOfPixels() == 0 || !reusedRegion.IsInside(covered))
    {
      needed.push_back(tile);
    }
  }
  return needed;
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::GenerateInputRequestedRegion()
{
  Superclass::GenerateInputRequestedRegion();
  auto * input = const_cast<InputImageType *>(this->GetInput());
  if (input == nullptr)
  {
    return;
  }
  // Only the tiles this update runs through the network read the input.
  const RegionType outputRegion = this->GetOutput()->GetRequestedRegion();
  const bool       reuse = this->CanReuse();
  RegionType       reusedRegion = reuse ? m_Reusable.Completed : RegionType();
  if (!reusedRegion.Crop(outputRegion))
  {
    reusedRegion = RegionType();
  }
  IndexType first;
  IndexType last;
  bool      any = false;
  for (const TileIndexType & tile : this->GetTilesNeeded(outputRegion, reusedRegion))
  {
    if (reuse && m_Reusable.Tiles.count(tile) > 0)
    {
      continue;
    }
    for (unsigned int axis = 0; axis < ImageDimension; ++axis)
    {
      first[axis] = any ? std::min(first[axis], tile[axis]) : tile[axis];
      last[axis] = any ? std::max(last[axis], tile[axis]) : tile[axis];
    }
    any = true;
  }
  typename TileGridType::TileRangeType tiles = m_TileGrid.GetTilesIntersecting(outputRegion);
  if (any)
  {
    tiles.SetIndex(first);
    tiles.SetUpperIndex(last);
  }
  if (tiles.GetNumberOfPixels() > 0)
  {
    const UNetBoundaryCondition<ImageDimension> boundary(m_BoundaryCondition, m_TileGrid.GetImageRegion());
    input->SetRequestedRegion(boundary.GetInputRequestedRegion(m_TileGrid.GetInputSpanOfTiles(tiles)));
  }
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::GatherInputTile(const InputImageType * input,
                                                                        const RegionType &     tile,
                                                                        float *                tileBuffer) const
{
  const unsigned int channels = input->GetNumberOfComponentsPerPixel();
  const auto *       source = reinterpret_cast<const InputValueType *>(input->GetBufferPointer());
  const RegionType & buffered = input->GetBufferedRegion();
  const auto &       bufferStrides = input->GetOffsetTable();
  const UNetBoundaryCondition<ImageDimension> boundary(m_BoundaryCondition, m_TileGrid.GetImageRegion());

  RegionType tileInput = tile;
  tileInput.PadByRadius(m_TileGrid.GetBorder());
  SizeValueType tileVoxels = tileInput.GetNumberOfPixels();

  // Per axis, the buffer offset each tile position reads (a multiple of the stride), or -1 for the constant.
  std::vector<IndexValueType> readOffsets[ImageDimension];
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
        itkExceptionMacro("Input index " << x << " along axis " << axis << " is outside the buffered region "
                                         << buffered << "; the input was not updated for the requested region.");
      }
      readOffsets[axis].push_back((x - buffered.GetIndex(axis)) * static_cast<IndexValueType>(bufferStrides[axis]));
    }
  }

  // value * scale + shift == (value - mean) / standard deviation, per channel.
  std::vector<float> scale(channels), shift(channels);
  for (unsigned int c = 0; c < channels; ++c)
  {
    const auto pick = [c](const std::vector<double> & values, double fallback) {
      return values.empty() ? fallback : values[values.size() == 1 ? 0 : c];
    };
    const double mean = pick(m_NormalizationMean, 0.0);
    const double standardDeviation = pick(m_NormalizationStandardDeviation, 1.0);
    scale[c] = static_cast<float>(1.0 / standardDeviation);
    shift[c] = static_cast<float>(-mean / standardDeviation);
  }

  const SizeValueType lineLength = tileInput.GetSize(0);
  float *             lineOut = tileBuffer;
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
        double value = m_BoundaryConstant;
        if (!lineIsConstant && readOffsets[0][i] >= 0)
        {
          const InputValueType raw = source[(lineOffset + readOffsets[0][i]) * channels + c];
          if constexpr (!std::is_integral<InputValueType>::value)
          {
            if (!std::isfinite(raw))
            {
              IndexType where = lineStart;
              where[0] += static_cast<IndexValueType>(i);
              itkExceptionMacro("The input holds a non-finite value (" << raw << ") at or mirrored from index " << where
                                                                       << '.');
            }
          }
          value = static_cast<double>(raw);
        }
        out[i] = static_cast<float>(value) * scale[c] + shift[c];
      }
    }
    lineOut += lineLength;
  }
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::GenerateData()
{
  const InputImageType * input = this->GetInput();
  OutputImageType *      labels = this->GetOutput();
  ProbabilityImageType * probabilities = this->GetProbabilityOutput();
  const RegionType       outputRegion = labels->GetRequestedRegion();
  const unsigned int     classes = m_Model->GetNumberOfClasses();

  // Copy a region's voxels (`components` values each, x fastest) between buffers holding other regions.
  const auto copyRegion = [](const RegionType & region,
                             const RegionType & fromRegion,
                             const auto *       from,
                             const RegionType & toRegion,
                             auto *             to,
                             SizeValueType      components) {
    for (const IndexType & lineStart : UNetLineStarts(region))
    {
      std::copy_n(from + UNetOffsetInRegion(fromRegion, lineStart) * components,
                  region.GetSize(0) * components,
                  to + UNetOffsetInRegion(toRegion, lineStart) * components);
    }
  };

  // What the last piece left: its final voxels that this one covers too, and its overlapping tiles.
  RegionType                   reusedRegion;
  std::vector<OutputPixelType> reusedLabels;
  std::vector<float>           reusedProbabilities;
  TileMapType                  keptTiles;
  if (this->CanReuse())
  {
    reusedRegion = m_Reusable.Completed;
    if (!reusedRegion.Crop(outputRegion))
    {
      reusedRegion = RegionType();
    }
    reusedLabels.resize(reusedRegion.GetNumberOfPixels());
    copyRegion(reusedRegion, m_Reusable.Completed, labels->GetBufferPointer(), reusedRegion, reusedLabels.data(), 1);
    if (probabilities != nullptr)
    {
      reusedProbabilities.resize(reusedRegion.GetNumberOfPixels() * classes);
      copyRegion(reusedRegion,
                 m_Reusable.Completed,
                 probabilities->GetBufferPointer(),
                 reusedRegion,
                 reusedProbabilities.data(),
                 classes);
    }
    keptTiles = std::move(m_Reusable.Tiles);
  }
  m_Reusable = ReusableResults{};

  const std::vector<TileIndexType>    tilesNeeded = this->GetTilesNeeded(outputRegion, reusedRegion);
  const UNetTileFlips<ImageDimension> flips(m_TestTimeFlipAxes);
  const unsigned int                  copies = flips.GetNumberOfCopies();
  const unsigned int                  channels = m_Model->GetNumberOfInputChannels();
  const SizeType                      inputTileSize = m_TileGrid.GetInputTileSize();
  const SizeValueType                 inputTileVoxels = RegionType(inputTileSize).GetNumberOfPixels();
  const SizeValueType                 outputTileVoxels = RegionType(m_TileGrid.GetTileSize()).GetNumberOfPixels();
  const auto         batchSize = static_cast<unsigned int>(std::min<SizeValueType>(m_BatchSize, tilesNeeded.size()));
  const bool         blend = m_TileGrid.GetBlend();
  const RegionType & image = m_TileGrid.GetImageRegion();

  // A ProgressEvent for each tile run through the network (not for those kept from the last piece).
  TileMapType   tilesForNext;
  SizeValueType tilesRun = 0;
  SizeValueType tilesToRun = 0;
  for (const TileIndexType & tile : tilesNeeded)
  {
    tilesToRun += keptTiles.count(tile) == 0 ? 1 : 0;
  }
  try
  {
    this->AllocateOutputs();
    UNetTileAccumulator<ImageDimension, OutputPixelType> accumulator(
      outputRegion,
      classes,
      m_TileGrid.GetTileSize(),
      blend,
      m_GaussianBlending,
      labels->GetBufferPointer(),
      probabilities == nullptr ? nullptr : probabilities->GetBufferPointer());
    const SizeValueType           inputValues = channels * inputTileVoxels;
    const SizeValueType           outputValues = classes * outputTileVoxels;
    std::vector<float>            batchInput(static_cast<size_t>(batchSize) * copies * inputValues);
    std::vector<float>            batchProbabilities(static_cast<size_t>(batchSize) * copies * outputValues);
    std::vector<float>            averaged(copies > 1 ? outputValues : 0);
    std::vector<TileIndexType>    batchTiles;
    const UNetModel::TileSizeType modelTileSize(inputTileSize.begin(), inputTileSize.end());

    // Accumulates a tile's probabilities; an overlapping tile that reaches past this piece is kept for the next.
    const auto accumulate = [&](const TileIndexType & tile, const float * tileProbabilities) {
      const RegionType tileRegion = m_TileGrid.GetTileRegion(tile);
      accumulator.Add(tileRegion, m_TileGrid.GetWrittenRegion(tile), tileProbabilities);
      RegionType inImage = tileRegion;
      inImage.Crop(image);
      if (blend && !outputRegion.IsInside(inImage))
      {
        tilesForNext[tile].assign(tileProbabilities, tileProbabilities + classes * outputTileVoxels);
      }
    };
    const auto runBatch = [&]() {
      if (batchTiles.empty())
      {
        return;
      }
      m_Model->PredictProbabilities(batchInput.data(),
                                    static_cast<unsigned int>(batchTiles.size() * copies),
                                    modelTileSize,
                                    batchProbabilities.data());
      for (size_t b = 0; b < batchTiles.size(); ++b)
      {
        const float * tileProbabilities = batchProbabilities.data() + b * copies * outputValues;
        if (copies > 1)
        {
          flips.Average(tileProbabilities, m_TileGrid.GetTileSize(), classes, averaged.data());
          tileProbabilities = averaged.data();
        }
        accumulate(batchTiles[b], tileProbabilities);
        ++tilesRun;
        this->UpdateProgress(static_cast<float>(tilesRun) / static_cast<float>(tilesToRun + 1));
      }
      batchTiles.clear();
      if (this->GetAbortGenerateData())
      {
        ProcessAborted aborted(__FILE__, __LINE__);
        aborted.SetDescription("UNetSegmentationImageFilter was aborted after " + std::to_string(tilesRun) + " of " +
                               std::to_string(tilesToRun) + " tiles.");
        throw aborted;
      }
    };

    // In tile order, so that blended voxels sum their tiles in the order a one-shot update does.
    for (const TileIndexType & tile : tilesNeeded)
    {
      const auto kept = keptTiles.find(tile);
      if (kept != keptTiles.end())
      {
        runBatch();
        accumulate(tile, kept->second.data());
        continue;
      }
      float * tileInput = batchInput.data() + batchTiles.size() * copies * inputValues;
      this->GatherInputTile(input, m_TileGrid.GetTileRegion(tile), tileInput);
      for (unsigned int copy = 1; copy < copies; ++copy)
      {
        flips.Flip(copy, tileInput, inputTileSize, channels, tileInput + copy * inputValues);
      }
      batchTiles.push_back(tile);
      if (batchTiles.size() == batchSize)
      {
        runBatch();
      }
    }
    runBatch();
    accumulator.Finish();
  }
  catch (const std::bad_alloc &)
  {
    this->ThrowOutOfMemory(outputRegion, batchSize, "std::bad_alloc");
  }
  catch (const MemoryAllocationError & error)
  {
    this->ThrowOutOfMemory(outputRegion, batchSize, error.GetDescription());
  }

  if (reusedRegion.GetNumberOfPixels() > 0)
  {
    copyRegion(reusedRegion, reusedRegion, reusedLabels.data(), outputRegion, labels->GetBufferPointer(), 1);
    if (probabilities != nullptr)
    {
      copyRegion(reusedRegion,
                 reusedRegion,
                 reusedProbabilities.data(),
                 outputRegion,
                 probabilities->GetBufferPointer(),
                 classes);
    }
  }
  m_Reusable.Grid = m_TileGrid;
  m_Reusable.Completed = outputRegion;
  m_Reusable.Tiles = std::move(tilesForNext);
  m_Reusable.Time.Modified();
  m_Reusable.Valid = true;
  this->UpdateProgress(1.0f);
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::ThrowOutOfMemory(const RegionType &  outputRegion,
                                                                         unsigned int        batchSize,
                                                                         const std::string & reason) const
{
  MemoryAllocationError error(__FILE__, __LINE__, "", ITK_LOCATION);
  std::ostringstream    message;
  message << "Out of memory segmenting tiles of " << m_TileGrid.GetTileSize() << " output voxels in batches of "
          << batchSize << " for an output region of " << outputRegion.GetSize() << " voxels (estimated working memory "
          << m_EstimatedWorkingMemory << " MB, MemoryBudget " << m_MemoryBudget
          << " MB): choose a smaller TileSize or TilesPerBatch, a smaller MemoryBudget, or stream the output. "
          << reason;
  error.SetDescription(message.str());
  throw error;
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::PrintSelf(std::ostream & os, Indent indent) const
{
  Superclass::PrintSelf(os, indent);
  os << indent << "Model:" << std::endl;
  m_Model->Print(os, indent.GetNextIndent());
  os << indent << "TileSize: " << m_TileSize << std::endl;
  os << indent << "TileOverlap: " << m_TileOverlap << std::endl;
  os << indent << "GaussianBlending: " << (m_GaussianBlending ? "On" : "Off") << std::endl;
  os << indent << "TilesPerBatch: " << m_TilesPerBatch << std::endl;
  os << indent << "MemoryBudget: " << m_MemoryBudget << " MB" << std::endl;
  os << indent << "EstimatedWorkingMemory: " << m_EstimatedWorkingMemory << " MB" << std::endl;
  os << indent << "GenerateProbabilities: " << (m_GenerateProbabilities ? "On" : "Off") << std::endl;
  os << indent << "TestTimeFlipAxes: " << m_TestTimeFlipAxes << std::endl;
  os << indent << "BoundaryCondition: " << m_BoundaryCondition << std::endl;
  os << indent << "BoundaryConstant: " << m_BoundaryConstant << std::endl;
  os << indent << "NormalizationMean:";
  for (const double value : m_NormalizationMean)
  {
    os << ' ' << value;
  }
  os << std::endl << indent << "NormalizationStandardDeviation:";
  for (const double value : m_NormalizationStandardDeviation)
  {
    os << ' ' << value;
  }
  os << std::endl;
}

} // end namespace itk

#endif // itkUNetSegmentationImageFilter_hxx
