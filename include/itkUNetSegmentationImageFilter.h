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
#include "itkUNetTilePlan.h"
#include "itkVectorImage.h"
#include "UNetSegmentationExport.h"

#include <algorithm>
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
 * \ingroup UNetSegmentation
 */
template <typename TInputImage, typename TOutputImage = Image<unsigned char, TInputImage::ImageDimension>>
class ITK_TEMPLATE_EXPORT UNetSegmentationImageFilter : public ImageToImageFilter<TInputImage, TOutputImage>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(UNetSegmentationImageFilter);

  using Self = UNetSegmentationImageFilter;
  using Superclass = ImageToImageFilter<TInputImage, TOutputImage>;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;

  itkNewMacro(Self);
  itkTypeMacro(UNetSegmentationImageFilter, ImageToImageFilter);

  static constexpr unsigned int ImageDimension = TInputImage::ImageDimension;

  using InputImageType = TInputImage;
  using InputPixelType = typename InputImageType::PixelType;
  using InputValueType = typename NumericTraits<InputPixelType>::ValueType;
  using OutputImageType = TOutputImage;
  using OutputPixelType = typename OutputImageType::PixelType;
  using ProbabilityImageType = VectorImage<float, ImageDimension>;
  using RegionType = typename OutputImageType::RegionType;
  using SizeType = typename OutputImageType::SizeType;
  using IndexType = typename OutputImageType::IndexType;
  using TilePlanType = UNetTilePlan<ImageDimension>;
  using TileGridType = UNetTileGrid<ImageDimension>;
  using DataObjectIdentifierType = typename Superclass::DataObjectIdentifierType;

  static_assert(ImageDimension == 2 || ImageDimension == 3, "UNetSegmentationImageFilter supports 2-D and 3-D images.");
  static_assert(std::is_integral<OutputPixelType>::value, "The label map's pixel type must be an integer type.");

  using BoundaryConditionEnum = UNetSegmentationImageFilterEnums::BoundaryCondition;
  using FlipAxesType = FixedArray<bool, ImageDimension>;

  /** The TorchScript file of the network. */
  void
  SetModelFileName(const std::string & fileName);
  std::string
  GetModelFileName() const;

  /** The model, for its probed geometry (load it with GetModel()->Load() or by updating the filter) or to share one
   * loaded model between filters. */
  void
  SetModel(UNetModel * model);
  itkGetModifiableObjectMacro(Model, UNetModel);

  /** Device the network runs on: "cpu" (default), "cuda", "cuda:N". */
  void
  SetDevice(const std::string & device);
  std::string
  GetDevice() const;

  /** Threads for LibTorch; 0 (default): ITK's global default number of threads. On the CPU a batch is split into up
   * to this many forward passes run side by side, each on its share of the threads (UNetModel::SetNumberOfThreads). */
  void
  SetNumberOfTorchThreads(unsigned int numberOfThreads);
  unsigned int
  GetNumberOfTorchThreads() const;

  /** Output edge of a tile along each axis. 0 along an axis (default) chooses it: the valid edges that need the
   * fewest network input voxels for the whole image (fewer, larger tiles lose less to the border; a last tile that
   * overhangs the image wastes the overhang, and the overlap that aligning tiles to the pooling grid leaves is
   * computed twice) while the estimated working memory stays within MemoryBudget. A non-zero edge must be valid for
   * the network (UNetModel::IsValidOutputSize) and, where the image needs more than one tile along that axis, at least
   * TileOverlap plus the downsampling factor, or the update throws. */
  itkSetMacro(TileSize, SizeType);
  itkGetConstReferenceMacro(TileSize, SizeType);

  /** Output voxels that neighbouring tiles share along each axis, and whose predictions are blended (default 0).
   *
   * Tiles advance by a multiple of the network's downsampling factor (UNetModel::GetDownsamplingFactor), so that
   * every tile sees the image on the pooling grid of one tile over the whole image: the stride is the largest such
   * multiple that keeps this overlap, so tiles may overlap by more. Without an overlap asked for (0), voxels that
   * tiles share come from one of them (a valid network gives the same values in each), and the result of a valid
   * network does not depend on the tile size; with one, they are blended, which a same-padded network, whose tiles
   * disagree near their edges, needs. */
  itkSetMacro(TileOverlap, SizeValueType);
  itkGetConstMacro(TileOverlap, SizeValueType);

  /** Blend overlapping tiles with Gaussian weights (sigma = tile edge / 8, centred on the tile; default) rather than
   * with equal weights. */
  itkSetMacro(GaussianBlending, bool);
  itkGetConstMacro(GaussianBlending, bool);
  itkBooleanMacro(GaussianBlending);

  /** Test-time flip augmentation (off by default): each tile's class probabilities are averaged over the flips along
   * these axes, all 2^k combinations of the k axes chosen, as nnU-Net mirrors. Each flipped copy of the input tile,
   * its context included, goes through the network in the same batch as the tile, and its probabilities are flipped
   * back. Per tile, so streaming still gives the one-shot result; the cost is about 2^k times the network's. */
  itkSetMacro(TestTimeFlipAxes, FlipAxesType);
  itkGetConstReferenceMacro(TestTimeFlipAxes, FlipAxesType);

  /** Tiles run through the network in one forward pass, each with its flipped copies (TestTimeFlipAxes); 0 (default)
   * fills MemoryBudget, up to 64 tiles. */
  itkSetMacro(TilesPerBatch, unsigned int);
  itkGetConstMacro(TilesPerBatch, unsigned int);

  /** Megabytes the filter's working memory for a stream piece may take (default 1024): the network's activations
   * for a batch (UNetModel::GetEstimatedForwardBytes), the batch's gathered input tiles and probabilities, the
   * blending buffers, and the tile layers (output and input with its context) by which a piece grows to whole tiles
   * and that it keeps for the next piece. The requested piece itself is the caller's. Automatic tile sizes and
   * batches stay within it; a TileSize or TilesPerBatch whose batch alone (activations, input and probabilities)
   * exceeds it makes the update throw rather than run out of memory. */
  itkSetMacro(MemoryBudget, double);
  itkGetConstMacro(MemoryBudget, double);

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

  /** Produce the "Probabilities" output (default on). Off, no per-class buffer is allocated, only the label map is
   * produced, and GetProbabilityOutput() returns null. */
  void
  SetGenerateProbabilities(bool generate);
  itkGetConstMacro(GenerateProbabilities, bool);
  itkBooleanMacro(GenerateProbabilities);

  /** Freeze the network when it is loaded (UNetModel::SetFreeze; default on). */
  void
  SetFreezeModel(bool freeze);
  bool
  GetFreezeModel() const;
  itkBooleanMacro(FreezeModel);

  itkSetEnumMacro(BoundaryCondition, BoundaryConditionEnum);
  itkGetEnumMacro(BoundaryCondition, BoundaryConditionEnum);
  void
  SetBoundaryConditionToMirror()
  {
    this->SetBoundaryCondition(BoundaryConditionEnum::Mirror);
  }
  void
  SetBoundaryConditionToZero()
  {
    this->SetBoundaryConditionToConstant(0.0);
  }
  void
  SetBoundaryConditionToConstant(double value)
  {
    this->SetBoundaryConstant(value);
    this->SetBoundaryCondition(BoundaryConditionEnum::Constant);
  }

  /** Value outside the image with the Constant boundary condition, before normalisation. */
  itkSetMacro(BoundaryConstant, double);
  itkGetConstMacro(BoundaryConstant, double);

  /** Per-channel normalisation (value - mean) / standard deviation, applied before the network. One value applies
   * to every channel; an empty vector (default) means mean 0 and standard deviation 1. */
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
  /** Normalisation as (value + shift) * scale, the same thing said the other way. */
  void
  SetNormalizationShiftScale(double shift, double scale);

#ifndef ITK_WRAPPING_PARSER
  /** Both normalisation settings as one value. */
  void
  SetNormalization(const UNetNormalization & normalization);
  itkGetConstReferenceMacro(Normalization, UNetNormalization);
#endif

  /** Output 0: the label map. */
  OutputImageType *
  GetLabelOutput()
  {
    return this->GetOutput(0);
  }

  /** The named output "Probabilities": per-class probabilities; null when GenerateProbabilities is off. */
  ProbabilityImageType *
  GetProbabilityOutput();
  const ProbabilityImageType *
  GetProbabilityOutput() const;

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
  DataObject::Pointer
  MakeOutput(const DataObjectIdentifierType & name) override;

  void
  VerifyPreconditions() ITKv5_CONST override;

  void
  GenerateOutputInformation() override;

  /** Grows the requested region to the voxels the tiles covering it complete (whole tiles, cropped to the image). */
  void
  EnlargeOutputRequestedRegion(DataObject * output) override;

  void
  GenerateInputRequestedRegion() override;

  void
  GenerateData() override;

  void
  PrintSelf(std::ostream & os, Indent indent) const override;

private:
  using TileIndexType = typename TileGridType::TileIndexType;
  using StreamCacheType = unet_detail::StreamCache<OutputImageType, ProbabilityImageType>;
  using TileMapType = typename StreamCacheType::TileMapType;

  /** Loads the model and checks that it fits the input and the label type. */
  void
  LoadModel();

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
  BoundaryConditionEnum m_BoundaryCondition{ BoundaryConditionEnum::Mirror };
  double                m_BoundaryConstant{ 0.0 };
  UNetNormalization     m_Normalization{};
  bool                  m_GenerateProbabilities{ true };
  FlipAxesType          m_TestTimeFlipAxes{ FlipAxesType::Filled(false) };

  TilePlanType    m_TilePlan{};
  StreamCacheType m_StreamCache{};
};

} // end namespace itk

#ifndef ITK_MANUAL_INSTANTIATION
#  include "itkUNetSegmentationImageFilter.hxx"
#endif

#endif // itkUNetSegmentationImageFilter_h
