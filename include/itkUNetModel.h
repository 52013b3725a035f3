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
#ifndef itkUNetModel_h
#define itkUNetModel_h

#include "UNetSegmentationExport.h"

#include "itkIntTypes.h"
#include "itkObject.h"
#include "itkObjectFactory.h"
#include "itkUNetNetworkGeometry.h"

#include <memory>
#include <string>
#include <vector>

namespace itk
{

/** \class UNetModel
 * \brief A TorchScript U-Net and the tile geometry found by probing it.
 *
 * Loads a TorchScript file (saved with `torch.jit.save`) with LibTorch and discovers, by running the network on
 * probe inputs, everything the overlap-tile strategy needs:
 *
 * - the number of input channels (from the first convolution weight, or by trying channel counts when the network
 *   has no convolution weight),
 * - the number of classes (output channels; a network with a single output channel is read as a two-class network
 *   whose foreground probability is the sigmoid of that channel),
 * - per axis, the border, the context each side of a tile loses to valid convolutions (0 for same-padded networks),
 * - per axis, the downsampling factor and the smallest valid input size: valid input edges are
 *   `MinimumInputSize + k * DownsamplingFactor`, k >= 0 (for a U-Net that pools d times by 2, the factor is 2^d).
 *
 * An edge is valid when the network maps it to `edge - 2 * border`: paper-style networks that centre-crop their
 * skip connections run on any large enough edge but shift their pooling grid on the others, and those are not
 * valid. Probing runs the network on zero inputs: cubes, doubling the edge until it runs; then each axis halved
 * while it still runs; then every edge stepped up one voxel at a time until each axis has two valid edges, whose
 * spacing is the factor. Where some steps fail, each axis is also tried alone, so that an axis pooled less than the
 * others gets its own factor. A third valid edge per axis, and the smallest tile and the next larger one with all
 * axes together, confirm the geometry. Probing costs a few dozen forward passes of small inputs.
 *
 * The class keeps every LibTorch type behind a private implementation, so that no LibTorch header reaches the users
 * of this header (nor castxml, when the module is wrapped).
 *
 * \ingroup UNetSegmentation
 */
class UNetSegmentation_EXPORT UNetModel : public Object
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(UNetModel);

  using Self = UNetModel;
  using Superclass = Object;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;

  itkNewMacro(Self);
  itkTypeMacro(UNetModel, Object);

  using SizeValueType = itk::SizeValueType;
  using TileSizeType = std::vector<SizeValueType>;

  /** TorchScript file to load. */
  itkSetStringMacro(FileName);
  itkGetStringMacro(FileName);

  /** Spatial dimension of the images the network is to take (2 or 3): Load() throws when the network's first
   * convolution says otherwise. 0, the default, accepts either (GetNetworkDimension() then says which). */
  itkSetMacro(ImageDimension, unsigned int);
  itkGetConstMacro(ImageDimension, unsigned int);

  /** Device the network runs on: "cpu" (default), "cuda" or "cuda:N". */
  itkSetStringMacro(Device);
  itkGetStringMacro(Device);

  /** Threads LibTorch may use; 0, the default, means ITK's global default number of threads. On the CPU a batch of
   * several tiles is split into up to this many forward passes that run side by side, each with its share of the
   * threads (faster than one pass over all of them; the outputs are the same). LibTorch keeps its thread count per
   * calling thread and process wide, so it is applied before every forward pass. */
  void
  SetNumberOfThreads(unsigned int numberOfThreads)
  {
    // Not Modified(): threads change neither the network nor its output, so they must not make the pipeline (whose
    // filters include the model's modification time) run again.
    m_NumberOfThreads = numberOfThreads;
  }
  itkGetConstMacro(NumberOfThreads, unsigned int);

  /** Freeze the network after loading (`torch::jit::freeze`: parameters and attributes become constants, batch
   * norms fold into convolutions) and then `torch::jit::optimize_for_inference`; default on. A network that cannot
   * be frozen runs as saved, with a warning. */
  itkSetMacro(Freeze, bool);
  itkGetConstMacro(Freeze, bool);
  itkBooleanMacro(Freeze);

  /** Largest probe edge tried before probing gives up (default 1024). */
  itkSetMacro(MaximumProbeSize, SizeValueType);
  itkGetConstMacro(MaximumProbeSize, SizeValueType);

  /** Loads the file and probes the network, unless the file, device and dimension are those of the last load.
   * Throws an ExceptionObject for a missing or corrupt file, an unavailable device, or a network whose geometry is
   * not that of a U-Net. */
  void
  Load();

  /** Whether Load() has succeeded for the current settings. */
  bool
  IsLoaded() const;

  /** Whether the loaded network runs frozen (Freeze on, and freezing succeeded). */
  bool
  IsFrozen() const;

  /** The geometry; valid after Load(). The network's spatial dimension, from its first convolution weight or, for a
   * network without one, ImageDimension. */
  unsigned int
  GetNetworkDimension() const;
  unsigned int
  GetNumberOfInputChannels() const;
  unsigned int
  GetNumberOfClasses() const;

  /** The geometry along `axis` (0: x, 1: y, 2: z; ITK's order, as ImageIOBase::GetDimensions(axis)): networks that
   * pool or convolve some axes less than others (in-plane only, say) have a geometry of their own on each axis. */
  /** Voxels a tile loses on each side to valid convolutions (0 for same-padded networks). */
  SizeValueType
  GetBorder(unsigned int axis) const;
  /** The network's downsampling factor: the product of its poolings' strides (2^k for k poolings by 2, 1 for a
   * network without pooling), probed as the spacing of its valid input edges. Tiles whose first input voxels lie a
   * multiple of it apart see the image on the same pooling grid, so they agree where they overlap. */
  SizeValueType
  GetDownsamplingFactor(unsigned int axis) const;
  /** The smallest valid input edge; valid edges are `GetMinimumInputSize(axis) + k * GetDownsamplingFactor(axis)`. */
  SizeValueType
  GetMinimumInputSize(unsigned int axis) const;
  SizeValueType
  GetMinimumOutputSize(unsigned int axis) const;

  /** Whether the network maps an output edge of this length from an input edge of `outputSize + 2 * border`. */
  bool
  IsValidOutputSize(unsigned int axis, SizeValueType outputSize) const;

  /** The smallest valid output edge that is at least `outputSize`. */
  SizeValueType
  GetValidOutputSizeAtLeast(unsigned int axis, SizeValueType outputSize) const;

  /** The largest valid output edge that is at most `outputSize`, or 0 if there is none. */
  SizeValueType
  GetValidOutputSizeAtMost(unsigned int axis, SizeValueType outputSize) const;

#ifndef ITK_WRAPPING_PARSER
  /** All of the geometry above, with the forward-pass memory model, as one value (what UNetTilePlan plans from). */
  const UNetNetworkGeometry &
  GetGeometry() const;
#endif

  /** Estimated peak bytes LibTorch allocates during one forward pass of `batchSize` tiles of `inputTileSize`
   * (activations and scores; the input tiles are the caller's). Load() measures the allocations of forward passes
   * of two probe tiles and extrapolates linearly in the number of input voxels. */
  double
  GetEstimatedForwardBytes(unsigned int batchSize, const TileSizeType & inputTileSize) const;

  /** Peak bytes LibTorch allocates while running the network once on `batchSize` zero tiles of `inputTileSize`,
   * measured through LibTorch's memory reporting (what GetEstimatedForwardBytes extrapolates from). */
  double
  MeasureForwardBytes(unsigned int batchSize, const TileSizeType & inputTileSize) const;

  /** Runs the network on a batch of equally sized tiles and writes class probabilities.
   *
   * `input` holds batchSize x channels x tile voxels floats, channels first, x fastest (ITK's buffer order);
   * `inputTileSize` gives the tile's edges along x, y(, z), each valid (output edge + 2 * border).
   * `probabilities` receives batchSize x classes x output voxels floats in the same order.
   * Throws an ExceptionObject when the network fails or its output does not have the probed shape. */
  void
  PredictProbabilities(const float * input, unsigned int batchSize, const TileSizeType & inputTileSize,
                       float * probabilities) const;

protected:
  UNetModel();
  ~UNetModel() override;

  void
  PrintSelf(std::ostream & os, Indent indent) const override;

private:
  void
  VerifyLoaded(const char * what) const;

  /** Throws unless the model is loaded and has `axis`. */
  void
  VerifyAxis(const char * what, unsigned int axis) const;

  /** PredictProbabilities for one forward pass of the whole batch on the calling thread, with this many LibTorch
   * threads. */
  void
  PredictProbabilitiesInOnePass(const float * input, unsigned int batchSize, const TileSizeType & inputTileSize,
                                float * probabilities, unsigned int numberOfThreads) const;

  /** Throws unless the model is loaded and every edge of `inputTileSize` is valid for it. */
  void
  VerifyInputTileSize(const char * what, const TileSizeType & inputTileSize) const;

  std::string   m_FileName{};
  std::string   m_Device{ "cpu" };
  unsigned int  m_ImageDimension{ 0 };
  unsigned int  m_NumberOfThreads{ 0 };
  bool          m_Freeze{ true };
  SizeValueType m_MaximumProbeSize{ 1024 };

  class Implementation;
  std::unique_ptr<Implementation> m_Implementation;
};

} // end namespace itk

#endif // itkUNetModel_h
