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

#include <algorithm>
#include <cmath>
#include <limits>

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
UNetSegmentationImageFilter<TInputImage, TOutputImage>::GenerateOutputInformation()
{
  Superclass::GenerateOutputInformation();
  this->ConfigureTiling();
  this->GetProbabilityOutput()->SetNumberOfComponentsPerPixel(m_Model->GetNumberOfClasses());
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

  const RegionType    image = input->GetLargestPossibleRegion();
  const SizeValueType border = m_Model->GetBorder();
  const double        budgetVoxels = m_MemoryBudget * 1024.0 * 1024.0 / m_Model->GetEstimatedBytesPerInputVoxel();
  const auto          budgetInputEdge = static_cast<SizeValueType>(std::pow(budgetVoxels, 1.0 / ImageDimension));
  SizeType            tileSize;
  for (unsigned int axis = 0; axis < ImageDimension; ++axis)
  {
    if (m_TileSize[axis] != 0)
    {
      if (!m_Model->IsValidOutputSize(m_TileSize[axis]))
      {
        itkExceptionMacro("TileSize[" << axis << "] = " << m_TileSize[axis] << " is not valid for the network in \""
                                      << m_Model->GetFileName() << "\"; the nearest valid tile edges are "
                                      << m_Model->GetValidOutputSizeAtMost(m_TileSize[axis]) << " and "
                                      << m_Model->GetValidOutputSizeAtLeast(m_TileSize[axis])
                                      << " (valid edges: " << m_Model->GetMinimumOutputSize() << " + k * "
                                      << m_Model->GetSizeGranularity() << ").");
      }
      tileSize[axis] = m_TileSize[axis];
      continue;
    }
    // The budget's edge, but no larger than the image needs, and larger than the overlap.
    SizeValueType edge =
      budgetInputEdge > 2 * border ? m_Model->GetValidOutputSizeAtMost(budgetInputEdge - 2 * border) : 0;
    edge = std::max(edge, m_Model->GetMinimumOutputSize());
    edge = std::min(edge, m_Model->GetValidOutputSizeAtLeast(image.GetSize(axis)));
    tileSize[axis] = std::max(edge, m_Model->GetValidOutputSizeAtLeast(m_TileOverlap + 1));
  }
  m_TileGrid = TileGridType(image, tileSize, m_TileOverlap, border);

  SizeValueType inputTileVoxels = 1;
  for (const SizeValueType edge : m_TileGrid.GetInputTileSize())
  {
    inputTileVoxels *= edge;
  }
  m_BatchSize =
    m_TilesPerBatch > 0
      ? m_TilesPerBatch
      : static_cast<unsigned int>(std::min(std::max(budgetVoxels / static_cast<double>(inputTileVoxels), 1.0), 64.0));
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
  input->SetRequestedRegion(
    m_TileGrid.GetRequiredInputRegion(this->GetOutput()->GetRequestedRegion(), m_BoundaryCondition));
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
  const RegionType & image = m_TileGrid.GetImageRegion();
  const auto &       bufferStrides = input->GetOffsetTable();
  const auto         border = static_cast<IndexValueType>(m_TileGrid.GetBorder());

  RegionType tileInput = tile;
  tileInput.PadByRadius(border);
  SizeValueType tileVoxels = tileInput.GetNumberOfPixels();

  // Per axis, the buffer offset each tile position reads (a multiple of the stride), or -1 for the constant.
  std::vector<IndexValueType> readOffsets[ImageDimension];
  for (unsigned int axis = 0; axis < ImageDimension; ++axis)
  {
    for (SizeValueType j = 0; j < tileInput.GetSize(axis); ++j)
    {
      IndexValueType x = tileInput.GetIndex(axis) + static_cast<IndexValueType>(j);
      const bool     outside = x < image.GetIndex(axis) || x > image.GetUpperIndex()[axis];
      if (outside && m_BoundaryCondition == BoundaryConditionEnum::Constant)
      {
        readOffsets[axis].push_back(-1);
        continue;
      }
      x = m_TileGrid.MirrorIndex(axis, x);
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
  UNetForEachLine(tileInput, [&](const IndexType & lineStart) {
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
  });
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::GenerateData()
{
  this->AllocateOutputs();
  const InputImageType * input = this->GetInput();
  OutputImageType *      labels = this->GetOutput();
  ProbabilityImageType * probabilities = this->GetProbabilityOutput();
  const RegionType       outputRegion = labels->GetBufferedRegion();
  if (probabilities->GetBufferedRegion() != outputRegion)
  {
    itkExceptionMacro("The label and probability outputs were requested for different regions ("
                      << outputRegion << " and " << probabilities->GetBufferedRegion() << ").");
  }

  const unsigned int  channels = m_Model->GetNumberOfInputChannels();
  const unsigned int  classes = m_Model->GetNumberOfClasses();
  const RegionType    tiles = m_TileGrid.GetTilesIntersecting(outputRegion);
  const SizeValueType numberOfTiles = tiles.GetNumberOfPixels();
  const SizeType      inputTileSize = m_TileGrid.GetInputTileSize();
  SizeValueType       inputTileVoxels = 1;
  SizeValueType       outputTileVoxels = 1;
  for (unsigned int axis = 0; axis < ImageDimension; ++axis)
  {
    inputTileVoxels *= inputTileSize[axis];
    outputTileVoxels *= m_TileGrid.GetTileSize()[axis];
  }
  const unsigned int batchSize = static_cast<unsigned int>(std::min<SizeValueType>(m_BatchSize, numberOfTiles));

  // With overlapping tiles every output voxel accumulates weight * probability over the tiles covering it, then is
  // divided by the summed weight. Edge-to-edge tiles cover each voxel once: the probabilities are copied.
  const bool          blend = m_TileOverlap > 0;
  const SizeValueType outputVoxels = outputRegion.GetNumberOfPixels();
  float *             probabilityBuffer = probabilities->GetBufferPointer();
  std::vector<float>  weightSums;
  std::vector<float>  tileWeights;
  if (blend)
  {
    std::fill_n(probabilityBuffer, outputVoxels * classes, 0.0f);
    weightSums.assign(outputVoxels, 0.0f);
    tileWeights = m_TileGrid.MakeBlendingWeights(m_GaussianBlending);
  }

  std::vector<float>            batchInput(static_cast<size_t>(batchSize) * channels * inputTileVoxels);
  std::vector<float>            batchProbabilities(static_cast<size_t>(batchSize) * classes * outputTileVoxels);
  std::vector<RegionType>       batchTiles;
  const UNetModel::TileSizeType modelTileSize(inputTileSize.begin(), inputTileSize.end());
  const auto &                  outputStrides = labels->GetOffsetTable();

  SizeValueType tilesDone = 0;
  for (SizeValueType batchStart = 0; batchStart < numberOfTiles; batchStart += batchSize)
  {
    batchTiles.clear();
    for (SizeValueType n = batchStart; n < std::min(numberOfTiles, batchStart + batchSize); ++n)
    {
      typename TileGridType::TileIndexType tileIndex;
      SizeValueType                        rest = n;
      for (unsigned int axis = 0; axis < ImageDimension; ++axis)
      {
        tileIndex[axis] = tiles.GetIndex(axis) + static_cast<IndexValueType>(rest % tiles.GetSize(axis));
        rest /= tiles.GetSize(axis);
      }
      batchTiles.push_back(m_TileGrid.GetTileRegion(tileIndex));
      this->GatherInputTile(
        input, batchTiles.back(), batchInput.data() + (batchTiles.size() - 1) * channels * inputTileVoxels);
    }
    m_Model->PredictProbabilities(
      batchInput.data(), static_cast<unsigned int>(batchTiles.size()), modelTileSize, batchProbabilities.data());

    for (size_t b = 0; b < batchTiles.size(); ++b)
    {
      const RegionType & tile = batchTiles[b];
      const float *      tileProbabilities = batchProbabilities.data() + b * classes * outputTileVoxels;
      RegionType         covered = tile;
      covered.Crop(outputRegion);
      UNetForEachLine(covered, [&](const IndexType & lineStart) {
        SizeValueType tileOffset = 0;
        SizeValueType outputOffset = 0;
        SizeValueType tileStride = 1;
        for (unsigned int axis = 0; axis < ImageDimension; ++axis)
        {
          tileOffset += static_cast<SizeValueType>(lineStart[axis] - tile.GetIndex(axis)) * tileStride;
          tileStride *= tile.GetSize(axis);
          outputOffset +=
            static_cast<SizeValueType>(lineStart[axis] - outputRegion.GetIndex(axis)) * outputStrides[axis];
        }
        for (SizeValueType i = 0; i < covered.GetSize(0); ++i)
        {
          float * voxel = probabilityBuffer + (outputOffset + i) * classes;
          if (!blend)
          {
            for (unsigned int k = 0; k < classes; ++k)
            {
              voxel[k] = tileProbabilities[k * outputTileVoxels + tileOffset + i];
            }
            continue;
          }
          const float weight = tileWeights[tileOffset + i];
          for (unsigned int k = 0; k < classes; ++k)
          {
            voxel[k] += weight * tileProbabilities[k * outputTileVoxels + tileOffset + i];
          }
          weightSums[outputOffset + i] += weight;
        }
      });
      ++tilesDone;
      this->UpdateProgress(static_cast<float>(tilesDone) / static_cast<float>(numberOfTiles + 1));
    }

    if (this->GetAbortGenerateData())
    {
      ProcessAborted aborted(__FILE__, __LINE__);
      aborted.SetDescription("UNetSegmentationImageFilter was aborted after " + std::to_string(tilesDone) + " of " +
                             std::to_string(numberOfTiles) + " tiles.");
      throw aborted;
    }
  }

  OutputPixelType * labelBuffer = labels->GetBufferPointer();
  for (SizeValueType v = 0; v < outputVoxels; ++v)
  {
    float *      voxel = probabilityBuffer + v * classes;
    unsigned int best = 0;
    for (unsigned int k = 0; k < classes; ++k)
    {
      if (blend)
      {
        voxel[k] /= weightSums[v];
      }
      best = voxel[k] > voxel[best] ? k : best;
    }
    labelBuffer[v] = static_cast<OutputPixelType>(best);
  }
  this->UpdateProgress(1.0f);
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
