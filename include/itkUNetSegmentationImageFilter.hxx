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

#include "itkCastImageFilter.h"
#include "itkStatisticsImageFilter.h"
#include "itkUNetProcessHeap.h"
#include "itkUNetTensorMemoryPool.h"
#include "itkUNetTileAccumulator.h"
#include "itkUNetTileBatchRunner.h"
#include "itkVectorIndexSelectionCastImageFilter.h"

#include <algorithm>
#include <cmath>
#include <optional>
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
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetPrecision(PrecisionEnum precision)
{
  if (precision != m_Model->GetPrecision())
  {
    m_Model->SetPrecision(precision);
    this->Modified();
  }
}

template <typename TInputImage, typename TOutputImage>
auto
UNetSegmentationImageFilter<TInputImage, TOutputImage>::GetPrecision() const -> PrecisionEnum
{
  return m_Model->GetPrecision();
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
  this->SetNormalization(UNetNormalization(mean, m_Normalization.GetStandardDeviation()));
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetNormalizationStandardDeviation(
  const std::vector<double> & standardDeviation)
{
  this->SetNormalization(UNetNormalization(m_Normalization.GetMean(), standardDeviation));
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetNormalization(const UNetNormalization & normalization)
{
  if (normalization != m_Normalization || !m_NormalizationSet)
  {
    m_Normalization = normalization;
    m_NormalizationSet = true;
    this->Modified();
  }
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetStandardizeImage(bool standardize)
{
  if (standardize != m_StandardizeImage || !m_NormalizationSet)
  {
    m_StandardizeImage = standardize;
    m_NormalizationSet = true;
    this->Modified();
  }
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetStandardizedMean(double mean)
{
  if (mean != m_StandardizedMean || !m_NormalizationSet)
  {
    m_StandardizedMean = mean;
    m_NormalizationSet = true;
    this->Modified();
  }
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetStandardizedStandardDeviation(double standardDeviation)
{
  if (standardDeviation != m_StandardizedStandardDeviation || !m_NormalizationSet)
  {
    m_StandardizedStandardDeviation = standardDeviation;
    m_NormalizationSet = true;
    this->Modified();
  }
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetTestTimeFlipAxes(const FlipAxesType & axes)
{
  if (axes != m_TestTimeFlipAxes || !m_TestTimeFlipAxesSet)
  {
    m_TestTimeFlipAxes = axes;
    m_TestTimeFlipAxesSet = true;
    this->Modified();
  }
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetTileOverlap(SizeValueType overlap)
{
  if (overlap != m_TileOverlap || !m_TileOverlapSet)
  {
    m_TileOverlap = overlap;
    m_TileOverlapSet = true;
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
  m_Normalization.VerifyValues();
  if (m_StandardizeImage && (!(m_StandardizedStandardDeviation > 0.0) ||
                             !std::isfinite(m_StandardizedStandardDeviation) || !std::isfinite(m_StandardizedMean)))
  {
    itkExceptionMacro("StandardizedMean must be finite and StandardizedStandardDeviation positive and finite; got "
                      << m_StandardizedMean << " and " << m_StandardizedStandardDeviation << '.');
  }
  if (!(m_MemoryBudget > 0.0) || !std::isfinite(m_MemoryBudget))
  {
    itkExceptionMacro("MemoryBudget must be positive and finite; got " << m_MemoryBudget << '.');
  }
  if (!std::isfinite(m_BoundaryConstant))
  {
    itkExceptionMacro("BoundaryConstant must be finite; got " << m_BoundaryConstant << '.');
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
  this->LoadModel();
  this->ApplyModelCard();
  typename TilePlanType::Settings settings;
  settings.TileSize = m_TileSize;
  settings.TileOverlap = m_AppliedTileOverlap;
  settings.TilesPerBatch = m_TilesPerBatch;
  settings.MemoryBudgetMegabytes = m_MemoryBudget;
  settings.NetworkInputsPerTile = unet_detail::TileFlips<ImageDimension>(m_AppliedFlipAxes).GetNumberOfCopies();
  // On the CPU one forward pass per thread side by side, each of one network input, or of as many as stay within 32
  // MiB, 64 MiB where the process keeps freed memory: small passes side by side spend a share of their time in
  // per-call work (allocation, LibTorch's and oneDNN's dispatch) that fewer, larger passes share out, up to those
  // bounds and no further (docs/benchmarks.md, "Batches on the CPU"). On a GPU, as many tiles as the budget holds.
  const bool onTheCpu = m_Model->GetDevice() == "cpu";
  settings.AutomaticPasses = onTheCpu ? m_Model->GetNumberOfThreadsInUse() : 0u;
  settings.SmallPassBytes = onTheCpu ? (UNetProcessHeap::KeepsFreedMemory() ? 64.0 : 32.0) * 1024.0 * 1024.0 : 0.0;
  settings.GenerateProbabilities = m_GenerateProbabilities;
  settings.LabelBytes = sizeof(OutputPixelType);
  settings.InputValueBytes = sizeof(InputValueType);
  m_TilePlan = TilePlanType(m_Model->GetGeometry(), this->GetInput()->GetLargestPossibleRegion(), settings);
  if (!m_TilePlan.IsWithinBudget())
  {
    itkWarningMacro("Tiles of " << this->GetTileGrid().GetTileSize() << " output voxels need about "
                                << this->GetEstimatedWorkingMemory()
                                << " MB of working memory, more than MemoryBudget (" << m_MemoryBudget
                                << " MB); using them.");
  }
  if (ProbabilityImageType * probabilities = this->GetProbabilityOutput())
  {
    probabilities->SetNumberOfComponentsPerPixel(m_TilePlan.GetGeometry().Classes);
  }
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::LoadModel()
{
  if (m_Model->GetImageDimension() != 0 && m_Model->GetImageDimension() != ImageDimension)
  {
    itkExceptionMacro("The model is set up for " << m_Model->GetImageDimension() << "-D images, but the filter is "
                                                 << ImageDimension << "-D.");
  }
  m_Model->SetImageDimension(ImageDimension);
  m_Model->SetProbeMemoryBudget(m_MemoryBudget);
  // An abort asked for while the network is probed stops the probing at its next forward pass (ProcessObject clears
  // the flag only later, before GenerateData).
#ifndef ITK_WRAPPING_PARSER
  m_Model->Load([this]() { return this->GetAbortGenerateData(); });
#else
  m_Model->Load();
#endif
  const unsigned int channels = this->GetInput()->GetNumberOfComponentsPerPixel();
  if (channels != m_Model->GetNumberOfInputChannels())
  {
    itkExceptionMacro("The input image has " << channels << " component(s) per pixel, but the network in \""
                                             << m_Model->GetFileName() << "\" takes "
                                             << m_Model->GetNumberOfInputChannels() << " channel(s).");
  }
  const unsigned int classes = m_Model->GetNumberOfClasses();
  if (classes - 1 > static_cast<unsigned long long>(NumericTraits<OutputPixelType>::max()))
  {
    itkExceptionMacro("The network has " << classes << " classes, more than the label pixel type can hold.");
  }
}

#ifndef ITK_WRAPPING_PARSER // the model card's C++17 types stay out of castxml's C++11 parse
template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::ApplyModelCard()
{
  std::optional<UNetModelCard> card;
  if (m_Model->HasModelCard())
  {
    card = m_Model->GetModelCard();
  }
  std::ostringstream description;
  if (m_NormalizationSet || !card || !(card->Normalization || card->StandardizeTo))
  {
    m_AppliedNormalization = m_Normalization;
    m_AppliedStandardize = m_StandardizeImage;
    m_AppliedStandardizedMean = m_StandardizedMean;
    m_AppliedStandardizedStandardDeviation = m_StandardizedStandardDeviation;
    description << (m_NormalizationSet ? "set by the caller" : "none");
  }
  else
  {
    m_AppliedNormalization = card->Normalization ? *card->Normalization : UNetNormalization();
    m_AppliedStandardize = card->StandardizeTo.has_value();
    m_AppliedStandardizedMean = card->StandardizeTo ? (*card->StandardizeTo)[0] : 0.0;
    m_AppliedStandardizedStandardDeviation = card->StandardizeTo ? (*card->StandardizeTo)[1] : 1.0;
    description << "from the model card";
  }
  if (m_AppliedStandardize)
  {
    description << ": each image standardised to mean " << m_AppliedStandardizedMean << " and standard deviation "
                << m_AppliedStandardizedStandardDeviation;
  }
  for (const auto & [name, values] :
       { std::make_pair(": mean", &m_AppliedNormalization.GetMean()),
         std::make_pair(", standard deviation", &m_AppliedNormalization.GetStandardDeviation()) })
  {
    for (size_t c = 0; c < values->size(); ++c)
    {
      description << (c == 0 ? name : ",") << ' ' << (*values)[c];
    }
  }
  if (m_AppliedNormalization.HasClipWindow())
  {
    description << ", clipped to [" << m_AppliedNormalization.GetClipWindow()[0] << ", "
                << m_AppliedNormalization.GetClipWindow()[1] << ']';
  }
  m_AppliedNormalizationDescription = description.str();
  m_AppliedNormalization.Verify(this->GetInput()->GetNumberOfComponentsPerPixel());

  m_AppliedFlipAxes = m_TestTimeFlipAxes;
  if (!m_TestTimeFlipAxesSet && card && card->FlipAxes)
  {
    m_AppliedFlipAxes.Fill(false);
    for (const unsigned int axis : *card->FlipAxes)
    {
      m_AppliedFlipAxes[axis] = true;
    }
  }
  m_AppliedTileOverlap = !m_TileOverlapSet && card && card->TileOverlap ? *card->TileOverlap : m_TileOverlap;
}
#endif

template <typename TInputImage, typename TOutputImage>
UNetNormalization
UNetSegmentationImageFilter<TInputImage, TOutputImage>::NormalizationForInput()
{
  if (!m_AppliedStandardize)
  {
    return m_AppliedNormalization;
  }
  const InputImageType * input = this->GetInput();
  if (input == m_StandardizedInput && input->GetMTime() == m_StandardizedInputTime)
  {
    return m_StandardizedNormalization;
  }
  if (input->GetBufferedRegion() != input->GetLargestPossibleRegion())
  {
    itkExceptionMacro("Standardising the image needs all of it, but only " << input->GetBufferedRegion()
                                                                           << " is buffered.");
  }
  // The statistics of a disconnected copy, so that the mini-pipeline leaves the input's own pipeline alone.
  auto copy = InputImageType::New();
  copy->Graft(input);
  const unsigned int  channels = input->GetNumberOfComponentsPerPixel();
  std::vector<double> means(channels);
  std::vector<double> standardDeviations(channels);
  for (unsigned int c = 0; c < channels; ++c)
  {
    using ChannelImageType = Image<float, ImageDimension>;
    auto statistics = StatisticsImageFilter<ChannelImageType>::New();
    if constexpr (std::is_arithmetic<InputPixelType>::value)
    {
      auto cast = CastImageFilter<InputImageType, ChannelImageType>::New();
      cast->SetInput(copy);
      statistics->SetInput(cast->GetOutput());
      statistics->Update();
    }
    else
    {
      auto channel = VectorIndexSelectionCastImageFilter<InputImageType, ChannelImageType>::New();
      channel->SetInput(copy);
      channel->SetIndex(c);
      statistics->SetInput(channel->GetOutput());
      statistics->Update();
    }
    means[c] = statistics->GetMean();
    standardDeviations[c] = statistics->GetSigma();
    if (!(standardDeviations[c] > 0.0))
    {
      itkExceptionMacro("Channel " << c << " of the image is constant (" << means[c]
                                   << "); it has no standard deviation to standardise.");
    }
  }
  m_StandardizedNormalization = m_AppliedNormalization.AfterStandardizing(
    means, standardDeviations, m_AppliedStandardizedMean, m_AppliedStandardizedStandardDeviation);
  m_StandardizedInput = input;
  m_StandardizedInputTime = input->GetMTime();
  return m_StandardizedNormalization;
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
  const TileGridType & grid = this->GetTileGrid();
  image->SetRequestedRegion(grid.GetRegionCompletedBy(grid.GetTilesIntersecting(image->GetRequestedRegion())));
}

template <typename TInputImage, typename TOutputImage>
auto
UNetSegmentationImageFilter<TInputImage, TOutputImage>::GetTilesNeeded(const RegionType & outputRegion,
                                                                       const RegionType & reusedRegion) const
  -> std::vector<TileIndexType>
{
  const TileGridType &       grid = this->GetTileGrid();
  std::vector<TileIndexType> needed;
  for (const TileIndexType & tile : ImageRegionIndexRange<ImageDimension>(grid.GetTilesIntersecting(outputRegion)))
  {
    RegionType written = grid.GetWrittenRegion(tile);
    written.Crop(outputRegion);
    if (reusedRegion.GetNumberOfPixels() == 0 || !reusedRegion.IsInside(written))
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
  const TileGridType & grid = this->GetTileGrid();
  const RegionType     outputRegion = this->GetOutput()->GetRequestedRegion();
  const bool           reuse = m_StreamCache.IsValidFor(grid, this->GetOutput(), this->GetProbabilityOutput());
  const RegionType     reusedRegion = reuse ? m_StreamCache.GetReusableRegion(outputRegion) : RegionType();
  IndexType            first;
  IndexType            last;
  bool                 any = false;
  for (const TileIndexType & tile : this->GetTilesNeeded(outputRegion, reusedRegion))
  {
    if (reuse && m_StreamCache.IsTileKept(tile))
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
  typename TileGridType::TileRangeType tiles = grid.GetTilesIntersecting(outputRegion);
  if (any)
  {
    tiles.SetIndex(first);
    tiles.SetUpperIndex(last);
  }
  if (m_AppliedStandardize)
  {
    input->SetRequestedRegionToLargestPossibleRegion(); // the statistics read all of it
  }
  else if (tiles.GetNumberOfPixels() > 0)
  {
    const UNetBoundaryCondition<ImageDimension> boundary(m_BoundaryCondition, grid.GetImageRegion());
    input->SetRequestedRegion(boundary.GetInputRequestedRegion(grid.GetInputSpanOfTiles(tiles)));
  }
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::GenerateData()
{
  // LibTorch's large blocks kept from pass to pass, and with KeepWorkingMemory from update to update, so that they
  // are faulted in once rather than every pass, unless the process keeps freed memory itself.
  std::optional<UNetTensorMemoryPool::Scope> keepTensorMemory;
  if (!UNetProcessHeap::KeepsFreedMemory())
  {
    keepTensorMemory.emplace();
    if (m_KeepWorkingMemory && m_WorkingMemory == nullptr)
    {
      m_WorkingMemory = std::make_unique<UNetTensorMemoryPool::Hold>();
    }
  }
  struct TrimWorkingMemory
  {
    std::unique_ptr<UNetTensorMemoryPool::Hold> & Memory;
    ~TrimWorkingMemory()
    {
      if (Memory != nullptr)
      {
        Memory->FreeIdleBlocks(); // this update's blocks are what the next one needs
      }
    }
  } const trimAtTheEnd{ m_WorkingMemory };
  OutputImageType *      labels = this->GetOutput();
  ProbabilityImageType * probabilities = this->GetProbabilityOutput();
  const RegionType       outputRegion = labels->GetRequestedRegion();
  // What the last piece left is copied out of the outputs before they are allocated for this one.
  auto reused = m_StreamCache.Take(this->GetTileGrid(), outputRegion, labels, probabilities);
  try
  {
    this->AllocateOutputs();
    TileMapType keep = this->SegmentTiles(outputRegion, reused);
    reused.RestoreInto(labels, probabilities);
    m_StreamCache.Keep(this->GetTileGrid(), outputRegion, std::move(keep));
  }
  catch (const std::bad_alloc &)
  {
    this->ThrowOutOfMemory(outputRegion, "std::bad_alloc");
  }
  catch (const MemoryAllocationError & error)
  {
    this->ThrowOutOfMemory(outputRegion, error.GetDescription());
  }
  this->UpdateProgress(1.0f);
}

template <typename TInputImage, typename TOutputImage>
auto
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SegmentTiles(const RegionType &                 outputRegion,
                                                                     typename StreamCacheType::Reused & reused)
  -> TileMapType
{
  const TileGridType &             grid = this->GetTileGrid();
  const std::vector<TileIndexType> tiles = this->GetTilesNeeded(outputRegion, reused.Region);
  const unsigned int               classes = m_TilePlan.GetGeometry().Classes;
  ProbabilityImageType *           probabilities = this->GetProbabilityOutput();
  unet_detail::TileAccumulator<ImageDimension, OutputPixelType> accumulator(
    outputRegion,
    classes,
    grid.GetTileSize(),
    grid.GetBlend(),
    m_GaussianBlending,
    this->GetOutput()->GetBufferPointer(),
    probabilities == nullptr ? nullptr : probabilities->GetBufferPointer());

  typename unet_detail::TileBatchRunner<InputImageType>::Settings settings;
  settings.Normalization = this->NormalizationForInput();
  settings.BoundaryCondition = m_BoundaryCondition;
  settings.BoundaryConstant = m_BoundaryConstant;
  settings.FlipAxes = m_AppliedFlipAxes;
  settings.BatchSize = static_cast<unsigned int>(std::min<SizeValueType>(m_TilePlan.GetBatchSize(), tiles.size()));
  const auto                                   tilesToRun = static_cast<SizeValueType>(std::count_if(
    tiles.begin(), tiles.end(), [&reused](const TileIndexType & tile) { return reused.Tiles.count(tile) == 0; }));
  unet_detail::TileBatchRunner<InputImageType> runner(
    m_Model, m_TilePlan.GetGeometry(), grid, settings, this, tilesToRun);

  // Blended tiles that reach past this piece are kept for the next one.
  TileMapType keep;
  const auto  accumulate = [&](const TileIndexType & tile, const float * tileProbabilities) {
    const RegionType tileRegion = grid.GetTileRegion(tile);
    accumulator.Add(tileRegion, grid.GetWrittenRegion(tile), tileProbabilities);
    RegionType inImage = tileRegion;
    inImage.Crop(grid.GetImageRegion());
    if (grid.GetBlend() && !outputRegion.IsInside(inImage))
    {
      keep[tile].assign(tileProbabilities, tileProbabilities + classes * tileRegion.GetNumberOfPixels());
    }
  };
  // In tile order, so that blended voxels sum their tiles in the order a one-shot update does.
  for (const TileIndexType & tile : tiles)
  {
    const auto kept = reused.Tiles.find(tile);
    if (kept == reused.Tiles.end())
    {
      runner.Add(this->GetInput(), tile, accumulate);
      continue;
    }
    runner.Flush(accumulate);
    accumulate(tile, kept->second.data());
  }
  runner.Flush(accumulate);
  accumulator.Finish();
  return keep;
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::ThrowOutOfMemory(const RegionType &  outputRegion,
                                                                         const std::string & reason) const
{
  std::ostringstream message;
  message << "Out of memory segmenting tiles of " << this->GetTileGrid().GetTileSize()
          << " output voxels in batches of " << m_TilePlan.GetBatchSize() << " for an output region of "
          << outputRegion.GetSize() << " voxels (estimated working memory " << this->GetEstimatedWorkingMemory()
          << " MB, MemoryBudget " << m_MemoryBudget
          << " MB): choose a smaller TileSize or TilesPerBatch, a smaller MemoryBudget, or stream "
          << "the output. " << reason;
  unet_detail::ThrowMemoryAllocationError(__FILE__, __LINE__, message.str());
}

template <typename TInputImage, typename TOutputImage>
void
UNetSegmentationImageFilter<TInputImage, TOutputImage>::SetKeepWorkingMemory(bool keep)
{
  // Not Modified(): the outputs do not depend on it.
  m_KeepWorkingMemory = keep;
  if (!keep)
  {
    m_WorkingMemory.reset();
  }
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
  os << indent << "KeepWorkingMemory: " << (m_KeepWorkingMemory ? "On" : "Off") << " ("
     << (m_WorkingMemory != nullptr ? "kept" : "none kept") << ')' << std::endl;
  os << indent << "GenerateProbabilities: " << (m_GenerateProbabilities ? "On" : "Off") << std::endl;
  os << indent << "TestTimeFlipAxes: " << m_TestTimeFlipAxes << std::endl;
  os << indent << "BoundaryCondition: " << m_BoundaryCondition << std::endl;
  os << indent << "BoundaryConstant: " << m_BoundaryConstant << std::endl;
  os << indent << "StandardizeImage: " << (m_StandardizeImage ? "On" : "Off") << " (to mean " << m_StandardizedMean
     << ", standard deviation " << m_StandardizedStandardDeviation << ')' << std::endl;
  os << indent << "NormalizationMean:";
  for (const double value : m_Normalization.GetMean())
  {
    os << ' ' << value;
  }
  os << std::endl << indent << "NormalizationStandardDeviation:";
  for (const double value : m_Normalization.GetStandardDeviation())
  {
    os << ' ' << value;
  }
  os << std::endl;
  os << indent << "Normalization applied: " << m_AppliedNormalizationDescription << std::endl;
  os << indent << "TestTimeFlipAxes applied: " << m_AppliedFlipAxes
     << (m_TestTimeFlipAxesSet ? " (set by the caller)" : "") << std::endl;
  os << indent << "TileOverlap applied: " << m_AppliedTileOverlap << std::endl;
  const TileGridType & grid = this->GetTileGrid();
  os << indent << "Tiles used: " << grid.GetTileSize() << " every " << grid.GetStride() << ", "
     << grid.GetNumberOfTiles() << ", " << m_TilePlan.GetBatchSize() << " a batch" << std::endl;
  os << indent << "EstimatedWorkingMemory: " << this->GetEstimatedWorkingMemory() << " MB" << std::endl;
}

} // end namespace itk

#endif // itkUNetSegmentationImageFilter_hxx
