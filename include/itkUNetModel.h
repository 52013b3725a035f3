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
#include "itkUNetSegmentationImageFilterEnums.h"
#ifndef ITK_WRAPPING_PARSER
#  include "itkUNetModelCard.h"
#endif

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace itk
{

/** \class UNetNonFiniteOutputError
 * \brief The network gave a score that is not a finite number (NaN or infinity) for one voxel of one tile of a batch.
 * \sa UNetModel
 * \ingroup UNetSegmentation */
class UNetSegmentation_EXPORT UNetNonFiniteOutputError : public ExceptionObject
{
public:
  /** Where in the batch: tile `batchTile` (its place in the batch), output channel `channel`, voxel `voxel` (its
   * offset in the output tile, x fastest), and the score. */
  UNetNonFiniteOutputError(const char * file, unsigned int line, unsigned int batchTile, unsigned int channel,
                           SizeValueType voxel, double score);
  /** The tile's place in its batch, the output channel and the voxel's offset in the output tile. */
  /** @{ */
  unsigned int
  GetBatchTile() const
  {
    return m_BatchTile;
  }
  unsigned int
  GetChannel() const
  {
    return m_Channel;
  }
  SizeValueType
  GetVoxel() const
  {
    return m_Voxel;
  }
  /** @} */
  /** Run-time type information. */
  const char *
  GetNameOfClass() const override
  {
    return "UNetNonFiniteOutputError";
  }

private:
  unsigned int  m_BatchTile{ 0 };
  unsigned int  m_Channel{ 0 };
  SizeValueType m_Voxel{ 0 };
};

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
 * The geometry and the model card describe the network loaded last, and PredictProbabilities() runs it: one Load()
 * publishes a new network whole, so threads sharing the model see one network or the other, never a mix. IsLoaded()
 * says whether the network loaded last is that of the current settings and file.
 *
 * The class keeps every LibTorch type behind a private implementation, so that no LibTorch header reaches the users
 * of this header (nor castxml, when the module is wrapped).
 *
 * \sa UNetSegmentationImageFilter, UNetNetworkGeometry, UNetTilePlan
 * \ingroup UNetSegmentation
 */
class UNetSegmentation_EXPORT UNetModel : public Object
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(UNetModel);

  /** Standard class type aliases. */
  /** @{ */
  using Self = UNetModel;
  using Superclass = Object;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;
  /** @} */

  /** Method for creation through the object factory. */
  itkNewMacro(Self);

  /** Run-time type information (and related methods). */
  itkTypeMacro(UNetModel, Object);

  /** An edge length, in voxels. */
  using SizeValueType = itk::SizeValueType;
  /** A tile's edges along x, y(, z): as many as the network has spatial dimensions. */
  using TileSizeType = std::vector<SizeValueType>;

  /** Set/Get the TorchScript file to load. */
  /** @{ */
  void
  SetFileName(const std::string & fileName);
  std::string
  GetFileName() const;
  /** @} */

  /** Set/Get the spatial dimension of the images the network is to take (2 or 3): Load() throws when the network's
   * first convolution says otherwise. 0, the default, accepts either (GetNetworkDimension() then says which). */
  /** @{ */
  void
  SetImageDimension(unsigned int imageDimension);
  unsigned int
  GetImageDimension() const;
  /** @} */

  /** Set/Get the device the network runs on: "cpu" (default), "cuda" or "cuda:N". */
  /** @{ */
  void
  SetDevice(const std::string & device);
  std::string
  GetDevice() const;
  /** @} */

  /** The floating-point type the network computes in. */
  using PrecisionEnum = UNetSegmentationImageFilterEnums::Precision;

  /** Set/Get the precision the network runs in on a CUDA device: Float32 (default) runs it as saved; Float16 and
   * BFloat16 run it under LibTorch's automatic mixed precision (as `torch.autocast`: convolutions and matrix products
   * in the lower precision, reductions and the output probabilities in float32), for less memory and more speed on
   * GPUs with tensor cores; the probabilities differ slightly from Float32's. On the CPU only Float32 runs: Load()
   * throws for the others. */
  /** @{ */
  void
  SetPrecision(PrecisionEnum precision);
  PrecisionEnum
  GetPrecision() const;
  /** @} */

  /** Set/Get the threads LibTorch may use; 0, the default, means ITK's global default number of threads. On the CPU a
   * batch of several tiles is split into up to this many forward passes that run side by side, each with its share of
   * the threads (faster than one pass over all of them; the outputs are the same). LibTorch keeps its thread count per
   * calling thread and process wide, so it is applied before every forward pass. Setting it does not call Modified():
   * it changes neither the network nor its output, so it must not make a pipeline run again. */
  /** @{ */
  void
  SetNumberOfThreads(unsigned int numberOfThreads);
  unsigned int
  GetNumberOfThreads() const;
  /** @} */

  /** GetNumberOfThreads, or ITK's global default number of threads when that is 0: the threads a batch shares on the
   * CPU, and the most forward passes side by side it is split into. */
  unsigned int
  GetNumberOfThreadsInUse() const;

  /** Set/Get whether to freeze the network after loading (`torch::jit::freeze`: parameters and attributes become
   * constants, batch norms fold into convolutions) and then run `torch::jit::optimize_for_inference`; default on. A
   * network that cannot be frozen runs as saved, with a warning. */
  /** @{ */
  void
  SetFreeze(bool freeze);
  bool
  GetFreeze() const;
  itkBooleanMacro(Freeze);
  /** @} */

  /** Set/Get the largest probe edge tried before probing gives up (default 1024). Not a change of the network: no
   * Modified(). */
  /** @{ */
  void
  SetMaximumProbeSize(SizeValueType edge);
  SizeValueType
  GetMaximumProbeSize() const;
  /** @} */

  /** Set/Get the megabytes a probe may take (default 1024; the segmentation filter sets its MemoryBudget): probing
   * grows its inputs while the allocations the probes so far took predict that the next stays within it, so a
   * network that fails on every input gives up within it. Not a change of the network: no Modified(). */
  /** @{ */
  void
  SetProbeMemoryBudget(double megabytes);
  double
  GetProbeMemoryBudget() const;
  /** @} */

  /** The most bytes LibTorch allocated during one probe of the last Load(), its input included (what the probing
   * budget bounds). */
  double
  GetProbePeakBytes() const;

  /** Loads the file and probes the network, unless the network loaded last is that of the current file name, device,
   * freeze setting and image dimension, and the file's modification time and size are those it had then: a file
   * rewritten in place (a network retrained) is loaded again. Throws an ExceptionObject for a missing or corrupt
   * file, an unavailable device, or a network whose geometry is not that of a U-Net.
   *
   * Safe while other threads predict with the model: the network loaded before stays theirs until they finish, and
   * the new one serves the calls that start after Load() returns. Loads of one model wait for each other; loads of
   * different models run side by side, so a network that hangs while probed holds up its own model only. */
  void
  Load();

#ifndef ITK_WRAPPING_PARSER
  /** Load(), asking `abortRequested` before each forward pass of the probing and throwing ProcessAborted when it says
   * so (what the segmentation filter passes its AbortGenerateData through). A forward pass already running is not
   * interrupted: LibTorch offers no way to. */
  void
  Load(const std::function<bool()> & abortRequested);
#endif

  /** Whether Load() has succeeded for the current settings and the file is unchanged since. */
  bool
  IsLoaded() const;

  /** The modification time, counting a change of the model file on disk since it was loaded as a modification, so
   * that a pipeline including the model's time runs again (and reloads it) when the file is rewritten. */
  ModifiedTimeType
  GetMTime() const override;

  /** Whether the loaded network runs frozen (Freeze on, and freezing succeeded). */
  bool
  IsFrozen() const;

  /** The geometry; valid after Load(). The network's spatial dimension, from its first convolution weight or, for a
   * network without one, ImageDimension. */
  unsigned int
  GetNetworkDimension() const;
  /** The number of input channels the network takes; valid after Load(). */
  unsigned int
  GetNumberOfInputChannels() const;
  /** The number of classes: the network's output channels, or 2 for a network with a single output channel (see the
   * class description); valid after Load(). */
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
  /** The smallest valid output edge: `GetMinimumInputSize(axis) - 2 * GetBorder(axis)`. */
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

  /** Whether the file carries a model card (UNetModelCard): the network's preprocessing, spacing, classes and
   * recommended settings. Valid after Load(). */
  bool
  HasModelCard() const;
  /** The physical voxel spacing the network was trained at, from the model card (x first); empty when the card has
   * none, or says the network works on the images' own grid (unit "pixel"). */
  std::vector<double>
  GetTrainedSpacing() const;
  /** The unit of GetTrainedSpacing(): "mm", "um" or "nm"; empty when it is empty. */
  std::string
  GetTrainedSpacingUnit() const;
  /** Millimetres in one `unit` ("mm", "um" or "nm", the physical units a model card's spacing takes); throws an
   * ExceptionObject naming `what` for any other. */
  static double
  MillimetersPerUnit(const std::string & unit, const char * what);

  /** The model card as JSON text (empty without one), e.g. for Python's json.loads. */
  std::string
  GetModelCardJSON() const;

#ifndef ITK_WRAPPING_PARSER
  /** The model card (a copy: a later Load() may replace it); throws without one. */
  UNetModelCard
  GetModelCard() const;

  /** All of the geometry above, with the forward-pass memory model, as one value (what UNetTilePlan plans from). */
  UNetNetworkGeometry
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

  /** Runs the network on a batch of equally sized tiles and writes class probabilities, with the network loaded when
   * the call starts (another thread's Load() meanwhile does not change it under the call).
   *
   * `input` holds batchSize x channels x tile voxels floats, channels first, x fastest (ITK's buffer order);
   * `inputTileSize` gives the tile's edges along x, y(, z), each valid (output edge + 2 * border).
   * `probabilities` receives batchSize x classes x output voxels floats in the same order.
   * Throws an ExceptionObject when the network fails or its output does not have the probed shape. */
  void
  PredictProbabilities(const float * input, unsigned int batchSize, const TileSizeType & inputTileSize,
                       float * probabilities) const;

#ifndef ITK_WRAPPING_PARSER
  /** PredictProbabilities, throwing unless the loaded network is the one `expected` describes (its dimension,
   * channels, classes and tile geometry: UNetNetworkGeometry::DescribesTheSameNetworkAs): a caller that sized its
   * buffers from GetGeometry() stays safe when another thread loads another network into the model meanwhile. */
  void
  PredictProbabilities(const UNetNetworkGeometry & expected, const float * input, unsigned int batchSize,
                       const TileSizeType & inputTileSize, float * probabilities) const;
#endif

protected:
  UNetModel();
  ~UNetModel() override;

  /** Prints the settings and, once loaded, the probed geometry. */
  void
  PrintSelf(std::ostream & os, Indent indent) const override;

private:
  class Implementation;
  using LoadedNetwork = std::shared_ptr<const Implementation>;

  /** What a load depends on, and the probing limits. */
  struct Settings
  {
    std::string   FileName{};
    std::string   Device{ "cpu" };
    PrecisionEnum Precision{ PrecisionEnum::Float32 };
    unsigned int  ImageDimension{ 0 };
    unsigned int  NumberOfThreads{ 0 };
    bool          Freeze{ true };
    SizeValueType MaximumProbeSize{ 1024 };
    double        ProbeMemoryBudget{ 1024.0 };
  };

  /** Whether a file exists, and its modification time (in the file clock's nanoseconds) and size. */
  struct FileStamp
  {
    bool      Exists{ false };
    int64_t   ModificationTime{ 0 };
    uintmax_t Size{ 0 };
    bool
    operator==(const FileStamp & other) const
    {
      return Exists == other.Exists && ModificationTime == other.ModificationTime && Size == other.Size;
    }
  };
  static FileStamp
  ReadFileStamp(const std::string & fileName);

  /** A copy of the settings, taken under the lock. */
  Settings
  CopySettings() const;

  /** Sets one setting under the lock; Modified() when it changed and `modifies`. */
  template <typename TValue>
  void
  SetSetting(TValue Settings::*setting, const TValue & value, bool modifies);

  /** Whether `network` was loaded with these settings (its own file stamp aside). */
  static bool
  LoadedWith(const Implementation & network, const Settings & settings);

  /** The network loaded last, shared with the caller so that a concurrent Load() cannot take it away mid-call;
   * throws, naming `what`, when none was loaded. */
  LoadedNetwork
  GetLoadedNetwork(const char * what) const;

  /** GetLoadedNetwork(), and throws unless the network has `axis`. */
  LoadedNetwork
  GetLoadedNetworkWithAxis(const char * what, unsigned int axis) const;

  /** Loads and probes a network with these settings; the caller publishes it. */
  LoadedNetwork
  LoadNetwork(const Settings & settings, const std::function<bool()> & abortRequested);

  /** PredictProbabilities for one forward pass of the whole batch on the calling thread, with this many LibTorch
   * threads. */
  static void
  PredictProbabilitiesInOnePass(const Implementation & network, const float * input, unsigned int batchSize,
                                const TileSizeType & inputTileSize, float * probabilities,
                                unsigned int numberOfThreads);

  /** Throws unless every edge of `inputTileSize` is valid for `network`. */
  static void
  VerifyInputTileSize(const Implementation & network, const char * what, const TileSizeType & inputTileSize);

  /** Guards the settings, the loaded network (the pointer: the network itself is immutable once published), the last
   * probe peak and the file-change record. */
  mutable std::mutex m_StateMutex{};
  /** Held by Load() while it loads, so that threads loading one model load it once; per model, so that a network
   * that hangs while probed holds up no other model. */
  std::mutex    m_LoadMutex{};
  Settings      m_Settings{};
  LoadedNetwork m_LoadedNetwork{};
  double        m_ProbePeakBytes{ 0.0 };
  /** The changed file stamp GetMTime() last counted as a modification, and when. */
  mutable FileStamp m_ChangedFileStamp{};
  mutable TimeStamp m_FileChangedTime{};
};

} // end namespace itk

#endif // itkUNetModel_h
