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
#ifndef itkUNetSegmentationImageFilter_h
#define itkUNetSegmentationImageFilter_h

#include "itkImageToImageFilter.h"
#include "itkUNetModel.h"
#include "itkUNetNormalization.h"
#include "itkUNetSegmentationImageFilterEnums.h"
#include "itkUNetStreamCache.h"
#include "itkUNetTensorMemoryPool.h"
#include "itkUNetTilePlan.h"
#include "itkVectorImage.h"
#include "UNetSegmentationExport.h"

#include <algorithm>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace itk
{

/** \class UNetSegmentationImageFilter
 * \brief Segments an image of any size with a TorchScript U-Net, tile by tile (overlap-tile strategy).
 *
 * The network's geometry is probed from the model file (see UNetModel): input channels, classes, the border its
 * valid convolutions lose, its downsampling factor, and its valid tile sizes. Output tiles sit on a grid anchored at
 * the image's first index, advancing by multiples of the downsampling factor so that every tile sees the image on
 * one pooling grid (see TileOverlap); each input tile carries the border of context on every side, and context
 * outside the image is mirrored (Ronneberger et al. 2015, Fig. 2) or filled with a constant. For a valid network the
 * result is therefore that of one tile over the whole image, whatever the tile size. Because the grid depends only
 * on the image, never on the requested region, a streamed result is identical to a one-shot one, whatever the
 * network.
 *
 * For same-padded networks (border 0) an overlap between neighbouring tiles, blended with Gaussian weights centred on
 * each tile, removes the seams those networks leave at tile edges.
 *
 * Outputs: the label map (output 0: the most probable class; TOutputImage's pixel type must hold the class count),
 * and the named output "Probabilities" (GetProbabilityOutput()), a VectorImage<float> with one probability per class.
 *
 * The input is a scalar image or a multi-component one (VectorImage, Vector pixels) whose component count is the
 * network's channel count. An optional per-channel normalisation, (value - mean) / standard deviation, is applied
 * voxel by voxel, so it streams.
 *
 * Streaming (ImageFileWriter, StreamingImageFilter, any downstream filter that asks for part of the output): a
 * requested region grows to the whole tiles that cover it (EnlargeOutputRequestedRegion), so that the next piece,
 * where it falls inside, is served without running the filter again; the voxels and overlapping tiles a piece shares
 * with the one before are reused rather than recomputed, so every tile runs through the network once per pipeline
 * update, whatever the pieces. GenerateInputRequestedRegion asks only for what the tiles still to run read (cropped
 * to the image; the rest is mirrored).
 *
 * \sa UNetModel, UNetTilePlan, UNetTileGrid, UNetProcessHeap, UNetCellSeparationImageFilter
 * \ingroup UNetSegmentation
 */
template <typename TInputImage, typename TOutputImage = Image<unsigned char, TInputImage::ImageDimension>>
class ITK_TEMPLATE_EXPORT UNetSegmentationImageFilter : public ImageToImageFilter<TInputImage, TOutputImage>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(UNetSegmentationImageFilter);

  /** Standard class type aliases. */
  /** @{ */
  using Self = UNetSegmentationImageFilter;
  using Superclass = ImageToImageFilter<TInputImage, TOutputImage>;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;
  /** @} */

  /** Method for creation through the object factory. */
  itkNewMacro(Self);

  /** Run-time type information (and related methods). */
  itkTypeMacro(UNetSegmentationImageFilter, ImageToImageFilter);

  /** Spatial dimension of the images (2 or 3). */
  static constexpr unsigned int ImageDimension = TInputImage::ImageDimension;

  /** Image type aliases: the input (scalar or multi-component; InputValueType is a component's type), the label map,
   * and the per-class probabilities. */
  /** @{ */
  using InputImageType = TInputImage;
  using InputPixelType = typename InputImageType::PixelType;
  using InputValueType = typename NumericTraits<InputPixelType>::ValueType;
  using OutputImageType = TOutputImage;
  using OutputPixelType = typename OutputImageType::PixelType;
  using ProbabilityImageType = VectorImage<float, ImageDimension>;
  using RegionType = typename OutputImageType::RegionType;
  using SizeType = typename OutputImageType::SizeType;
  using IndexType = typename OutputImageType::IndexType;
  /** @} */
  /** The tile plan and tile grid of an update (GetTilePlan(), GetTileGrid()). */
  /** @{ */
  using TilePlanType = UNetTilePlan<ImageDimension>;
  using TileGridType = UNetTileGrid<ImageDimension>;
  /** @} */
  /** Names the outputs: the "Probabilities" output is a named one. */
  using DataObjectIdentifierType = typename Superclass::DataObjectIdentifierType;

  static_assert(ImageDimension == 2 || ImageDimension == 3, "UNetSegmentationImageFilter supports 2-D and 3-D images.");
  static_assert(std::is_integral<OutputPixelType>::value, "The label map's pixel type must be an integer type.");

  /** What fills a tile's context outside the image: Mirror or Constant. */
  using BoundaryConditionEnum = UNetSegmentationImageFilterEnums::BoundaryCondition;
  /** One flag per axis: whether test-time augmentation flips along it. */
  using FlipAxesType = FixedArray<bool, ImageDimension>;

  /** Set/Get the TorchScript file of the network (the model's FileName). */
  /** @{ */
  void
  SetModelFileName(const std::string & fileName);
  std::string
  GetModelFileName() const;
  /** @} */

  /** Set/Get the model, for its probed geometry (load it with GetModel()->Load() or by updating the filter) or to
   * share one loaded model between filters. SetModel() throws for null. */
  /** @{ */
  void
  SetModel(UNetModel * model);
  itkGetModifiableObjectMacro(Model, UNetModel);
  /** @} */

  /** Set/Get the device the network runs on: "cpu" (default), "cuda", "cuda:N" (the model's Device). */
  /** @{ */
  void
  SetDevice(const std::string & device);
  std::string
  GetDevice() const;
  /** @} */

  /** The floating-point type the network computes in. */
  using PrecisionEnum = UNetSegmentationImageFilterEnums::Precision;

  /** Set/Get the precision the network runs in on a CUDA device (the model's Precision): Float32 (default), or
   * Float16 / BFloat16 under LibTorch's automatic mixed precision. Tiles are gathered and stitched in float32 on the
   * CPU whatever the precision. Float16 and BFloat16 on the CPU fail when the model loads. */
  /** @{ */
  void
  SetPrecision(PrecisionEnum precision);
  PrecisionEnum
  GetPrecision() const;
  /** @} */

  /** Set/Get the threads for LibTorch; 0 (default): ITK's global default number of threads. On the CPU a batch is
   * split into up to this many forward passes run side by side, each on its share of the threads
   * (UNetModel::SetNumberOfThreads). Threads change neither the output nor the pipeline's need to update. */
  /** @{ */
  void
  SetNumberOfTorchThreads(unsigned int numberOfThreads);
  unsigned int
  GetNumberOfTorchThreads() const;
  /** @} */

  /** Set/Get the output edge of a tile along each axis. 0 along an axis (default) chooses it: the valid edges that need
   * the fewest network input voxels for the whole image (fewer, larger tiles lose less to the border; a last tile that
   * overhangs the image wastes the overhang, and the overlap that aligning tiles to the pooling grid leaves is
   * computed twice) while the estimated working memory stays within MemoryBudget. A non-zero edge must be valid for
   * the network (UNetModel::IsValidOutputSize) and, where the image needs more than one tile along that axis, at least
   * TileOverlap plus the downsampling factor, or the update throws. */
  /** @{ */
  itkSetMacro(TileSize, SizeType);
  itkGetConstReferenceMacro(TileSize, SizeType);
  /** @} */

  /** Set/Get the output voxels that neighbouring tiles share along each axis, and whose predictions are blended
   * (default 0).
   *
   * Tiles advance by a multiple of the network's downsampling factor (UNetModel::GetDownsamplingFactor), so that
   * every tile sees the image on the pooling grid of one tile over the whole image: the stride is the largest such
   * multiple that keeps this overlap, so tiles may overlap by more. Without an overlap asked for (0), voxels that
   * tiles share come from one of them (a valid network gives the same values in each), and the result of a valid
   * network does not depend on the tile size; with one, they are blended, which a same-padded network, whose tiles
   * disagree near their edges, needs.
   *
   * A model card's recommended overlap (UNetModelCard) applies unless the caller set one. */
  /** @{ */
  void
  SetTileOverlap(SizeValueType overlap);
  itkGetConstMacro(TileOverlap, SizeValueType);
  /** @} */

  /** Set/Get whether overlapping tiles blend with Gaussian weights (sigma = tile edge / 8, centred on the tile;
   * default) rather than with equal weights. */
  /** @{ */
  itkSetMacro(GaussianBlending, bool);
  itkGetConstMacro(GaussianBlending, bool);
  itkBooleanMacro(GaussianBlending);
  /** @} */

  /** Set/Get the axes of test-time flip augmentation (none by default): each tile's class probabilities are averaged
   * over the flips along these axes, all 2^k combinations of the k axes chosen, as nnU-Net mirrors. Each flipped copy
   * of the input tile, its context included, goes through the network in the same batch as the tile, and its
   * probabilities are flipped back. Per tile, so streaming still gives the one-shot result; the cost is about 2^k times
   * the network's. A model card's flip axes (UNetModelCard) apply unless the caller set some. */
  /** @{ */
  void
  SetTestTimeFlipAxes(const FlipAxesType & axes);
  itkGetConstReferenceMacro(TestTimeFlipAxes, FlipAxesType);
  /** @} */

  /** Set/Get the tiles run through the network in one batch, each with its flipped copies (TestTimeFlipAxes); on the
   * CPU a batch runs as up to NumberOfTorchThreads forward passes side by side. 0 (default): on the CPU one network
   * input per pass, or as many as keep a pass's estimated forward memory within 32 MiB (small tiles; 64 MiB where
   * UNetProcessHeap says the process keeps freed memory), at least one tile, and an automatic TileSize is chosen for
   * one input per pass; on a GPU, as many tiles as MemoryBudget holds, up to 64. Fewer where MemoryBudget holds
   * fewer. */
  /** @{ */
  itkSetMacro(TilesPerBatch, unsigned int);
  itkGetConstMacro(TilesPerBatch, unsigned int);
  /** @} */

  /** Set/Get the megabytes the filter's working memory for a stream piece may take (default 1024): the network's
   * activations for a batch (UNetModel::GetEstimatedForwardBytes), the batch's gathered input tiles and probabilities,
   * the blending buffers, and the tile layers (output and input with its context) by which a piece grows to whole tiles
   * and that it keeps for the next piece. The requested piece itself is the caller's. Automatic tile sizes and
   * batches stay within it; a TileSize or TilesPerBatch whose batch alone (activations, input and probabilities)
   * exceeds it makes the update throw rather than run out of memory. */
  /** @{ */
  itkSetMacro(MemoryBudget, double);
  itkGetConstMacro(MemoryBudget, double);
  /** @} */

  /** Set/Get whether the filter keeps LibTorch's working memory on the CPU from one update (or stream piece) to the
   * next (default on), where the process does not keep freed memory itself (UNetProcessHeap): the large blocks the
   * last update used stay allocated until the filter is destroyed or this is turned off, so that the next update does
   * not fault them in again (UNetTensorMemoryPool). Off, they are freed at the end of each update. The outputs do not
   * depend on it: setting it does not modify the filter, and turning it off frees what is kept at once. */
  /** @{ */
  void
  SetKeepWorkingMemory(bool keep);
  itkGetConstMacro(KeepWorkingMemory, bool);
  itkBooleanMacro(KeepWorkingMemory);
  /** @} */

  /** How far apart neighbouring tiles start along each axis, in output voxels (see TileOverlap); valid once the output
   * information is generated. */
  const SizeType &
  GetTileStride() const
  {
    return this->GetTileGrid().GetStride();
  }

  /** The working memory, in megabytes, estimated for the tile size and batch of the last update (see MemoryBudget);
   * valid once the output information is generated. */
  double
  GetEstimatedWorkingMemory() const
  {
    return m_TilePlan.GetMemoryEstimate().GetTotalBytes() / (1024.0 * 1024.0);
  }

  /** Set/Get whether to produce the "Probabilities" output (default on). Off, no per-class buffer is allocated, only
   * the label map is produced, and GetProbabilityOutput() returns null. */
  /** @{ */
  void
  SetGenerateProbabilities(bool generate);
  itkGetConstMacro(GenerateProbabilities, bool);
  itkBooleanMacro(GenerateProbabilities);
  /** @} */

  /** Set/Get whether to freeze the network when it is loaded (UNetModel::SetFreeze; default on). */
  /** @{ */
  void
  SetFreezeModel(bool freeze);
  bool
  GetFreezeModel() const;
  itkBooleanMacro(FreezeModel);
  /** @} */

  /** Set/Get what fills a tile's context outside the image (see UNetBoundaryCondition): the image mirrored at its
   * edges (default), or BoundaryConstant. */
  /** @{ */
  itkSetEnumMacro(BoundaryCondition, BoundaryConditionEnum);
  itkGetEnumMacro(BoundaryCondition, BoundaryConditionEnum);
  /** @} */
  /** Mirror the image at its edges. */
  void
  SetBoundaryConditionToMirror()
  {
    this->SetBoundaryCondition(BoundaryConditionEnum::Mirror);
  }
  /** Zero padding: the Constant boundary condition with BoundaryConstant 0. */
  void
  SetBoundaryConditionToZero()
  {
    this->SetBoundaryConditionToConstant(0.0);
  }
  /** The Constant boundary condition with BoundaryConstant `value`. */
  void
  SetBoundaryConditionToConstant(double value)
  {
    this->SetBoundaryConstant(value);
    this->SetBoundaryCondition(BoundaryConditionEnum::Constant);
  }

  /** Set/Get the value outside the image with the Constant boundary condition, before normalisation (default 0). */
  /** @{ */
  itkSetMacro(BoundaryConstant, double);
  itkGetConstMacro(BoundaryConstant, double);
  /** @} */

  /** Set/Get the per-channel normalisation (value - mean) / standard deviation, applied before the network. One value
   * applies to every channel; an empty vector (default) means mean 0 and standard deviation 1.
   *
   * A model card's normalisation (UNetModelCard) applies unless the caller set any of the normalisation settings
   * (these, SetNormalizationShiftScale, StandardizeImage); GetAppliedNormalizationDescription() says which applies. */
  /** @{ */
  void
  SetNormalizationMean(const std::vector<double> & mean);
  const std::vector<double> &
  GetNormalizationMean() const
  {
    return m_Normalization.GetMean();
  }
  void
  SetNormalizationStandardDeviation(const std::vector<double> & standardDeviation);
  const std::vector<double> &
  GetNormalizationStandardDeviation() const
  {
    return m_Normalization.GetStandardDeviation();
  }
  /** @} */
  /** Normalisation as (value + shift) * scale, the same thing said the other way. */
  void
  SetNormalizationShiftScale(double shift, double scale);

  /** Set/Get per-image standardisation (off by default): each channel of the image mapped linearly to
   * StandardizedMean and StandardizedStandardDeviation over the whole image (ITK's StatisticsImageFilter: the
   * sample standard deviation) before the normalisation, for networks trained on images standardised so; nnU-Net's
   * z-score normalisation. It reads the whole input image, so the input does not stream (the outputs still do). */
  /** @{ */
  void
  SetStandardizeImage(bool standardize);
  itkGetConstMacro(StandardizeImage, bool);
  itkBooleanMacro(StandardizeImage);
  void
  SetStandardizedMean(double mean);
  itkGetConstMacro(StandardizedMean, double);
  void
  SetStandardizedStandardDeviation(double standardDeviation);
  itkGetConstMacro(StandardizedStandardDeviation, double);
  /** @} */

  /** What the last update's input normalisation was and where it came from ("set by the caller", "from the model
   * card", "none"): valid once the output information is generated. */
  itkGetStringMacro(AppliedNormalizationDescription);

#ifndef ITK_WRAPPING_PARSER
  /** Set/Get both normalisation settings as one value. */
  /** @{ */
  void
  SetNormalization(const UNetNormalization & normalization);
  itkGetConstReferenceMacro(Normalization, UNetNormalization);
  /** @} */
#endif

  /** Output 0: the label map. */
  OutputImageType *
  GetLabelOutput()
  {
    return this->GetOutput(0);
  }

  /** The named output "Probabilities": per-class probabilities; null when GenerateProbabilities is off. */
  /** @{ */
  ProbabilityImageType *
  GetProbabilityOutput();
  const ProbabilityImageType *
  GetProbabilityOutput() const;
  /** @} */

  /** Includes the model's modification time, so that changing a shared model re-runs the filter. */
  ModifiedTimeType
  GetMTime() const override
  {
    return std::max(Superclass::GetMTime(), m_Model->GetMTime());
  }

#ifndef ITK_WRAPPING_PARSER
  /** The tiles, batches and memory the last update used (or will use, once the output information is generated). */
  const TilePlanType &
  GetTilePlan() const
  {
    return m_TilePlan;
  }
  /** The tile grid of GetTilePlan(). */
  const TileGridType &
  GetTileGrid() const
  {
    return m_TilePlan.GetGrid();
  }
#endif

protected:
  UNetSegmentationImageFilter();
  ~UNetSegmentationImageFilter() override = default;

  /** The probabilities are a named output, "Probabilities": the indexed outputs of an ITK filter share one image
   * type, and the Python functional interface returns them all. */
  using Superclass::MakeOutput;
  /** Makes the "Probabilities" output, a ProbabilityImageType, for that name; the other outputs as the superclass
   * does. */
  DataObject::Pointer
  MakeOutput(const DataObjectIdentifierType & name) override;

  /** The model file must be set, and the normalisation values, MemoryBudget and BoundaryConstant valid. */
  void
  VerifyPreconditions() ITKv5_CONST override;

  /** Loads the model (checking it against the input's channels and the label type), plans the tiles and batches
   * (GetTilePlan(); warns when even the smallest tiles exceed MemoryBudget), and gives the "Probabilities" output one
   * component per class. */
  void
  GenerateOutputInformation() override;

  /** Grows the requested region to the voxels the tiles covering it complete (whole tiles, cropped to the image). */
  void
  EnlargeOutputRequestedRegion(DataObject * output) override;

  /** Requests only the input voxels that the tiles this update still runs through the network read (see
   * UNetBoundaryCondition::GetInputRequestedRegion), not those of tiles the last piece of a streamed update kept. */
  void
  GenerateInputRequestedRegion() override;

  /** Runs the tiles the requested region needs through the network, in batches, and writes the label map and the
   * probabilities, reusing what the last piece of a streamed update kept and keeping what the next one can use.
   * Running out of memory throws a MemoryAllocationError that names the tiles, batch and budget. */
  void
  GenerateData() override;

  /** Prints the settings, the model and the tiles of the last plan. */
  void
  PrintSelf(std::ostream & os, Indent indent) const override;

private:
  using TileIndexType = typename TileGridType::TileIndexType;
  using StreamCacheType = unet_detail::StreamCache<OutputImageType, ProbabilityImageType>;
  using TileMapType = typename StreamCacheType::TileMapType;

  /** Loads the model and checks that it fits the input and the label type. */
  void
  LoadModel();

  /** Decides the normalisation, flips and overlap of the update: the caller's, or the model card's. */
  void
  ApplyModelCard();

  /** The normalisation the tiles get: the applied one, after per-image standardisation when that applies (its
   * statistics computed over the whole input once per input). */
  UNetNormalization
  NormalizationForInput();

  /** The tiles whose probabilities an update of `outputRegion` needs, in tile order: those writing a voxel outside
   * `reusedRegion`. */
  std::vector<TileIndexType>
  GetTilesNeeded(const RegionType & outputRegion, const RegionType & reusedRegion) const;

  /** Runs the tiles an update of `outputRegion` needs (or takes them from `reused`) and accumulates them into the
   * outputs; returns the blended tiles that reach past `outputRegion`, for the next piece. */
  TileMapType
  SegmentTiles(const RegionType & outputRegion, typename StreamCacheType::Reused & reused);

  /** Throws a MemoryAllocationError that names the tiles, batch and budget of an update that ran out of memory. */
  [[noreturn]] void
  ThrowOutOfMemory(const RegionType & outputRegion, const std::string & reason) const;

  UNetModel::Pointer    m_Model{};
  SizeType              m_TileSize{ { 0 } };
  SizeValueType         m_TileOverlap{ 0 };
  bool                  m_GaussianBlending{ true };
  unsigned int          m_TilesPerBatch{ 0 };
  double                m_MemoryBudget{ 1024.0 };
  bool                  m_KeepWorkingMemory{ true };
  BoundaryConditionEnum m_BoundaryCondition{ BoundaryConditionEnum::Mirror };
  double                m_BoundaryConstant{ 0.0 };
  UNetNormalization     m_Normalization{};
  bool                  m_StandardizeImage{ false };
  double                m_StandardizedMean{ 0.0 };
  double                m_StandardizedStandardDeviation{ 1.0 };
  bool                  m_GenerateProbabilities{ true };
  FlipAxesType          m_TestTimeFlipAxes{ FlipAxesType::Filled(false) };
  // Whether the caller set these; the model card's apply otherwise.
  bool m_NormalizationSet{ false };
  bool m_TestTimeFlipAxesSet{ false };
  bool m_TileOverlapSet{ false };

  // What applies for the update, from the caller's settings or the model card (GenerateOutputInformation).
  UNetNormalization m_AppliedNormalization{};
  bool              m_AppliedStandardize{ false };
  double            m_AppliedStandardizedMean{ 0.0 };
  double            m_AppliedStandardizedStandardDeviation{ 1.0 };
  FlipAxesType      m_AppliedFlipAxes{ FlipAxesType::Filled(false) };
  SizeValueType     m_AppliedTileOverlap{ 0 };
  std::string       m_AppliedNormalizationDescription{};
  // Per-image standardisation: the normalisation it resolved to for the input at m_StandardizedInputTime.
  UNetNormalization      m_StandardizedNormalization{};
  const InputImageType * m_StandardizedInput{ nullptr };
  ModifiedTimeType       m_StandardizedInputTime{ 0 };

  TilePlanType    m_TilePlan{};
  StreamCacheType m_StreamCache{};
  /** LibTorch's large CPU blocks kept from one update to the next (KeepWorkingMemory). */
  std::unique_ptr<UNetTensorMemoryPool::Hold> m_WorkingMemory{};
};

} // end namespace itk

#ifndef ITK_MANUAL_INSTANTIATION
#  include "itkUNetSegmentationImageFilter.hxx"
#endif

#endif // itkUNetSegmentationImageFilter_h
