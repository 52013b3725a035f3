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
#include "itkUNetModel.h"

#include "itkMacro.h"
#include "itkMultiThreaderBase.h"

#include <ATen/EmptyTensor.h>
#include <ATen/Parallel.h>
#include <c10/core/Allocator.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

namespace itk
{

namespace
{
// LibTorch's messages run on with backtraces. A TorchScript interpreter error says what failed on its last
// "...Error: " line; other errors on their first non-empty line (TorchScript's compiler starts with a newline).
std::string
FirstLine(const std::string & text)
{
  std::istringstream lines(text);
  std::string        line;
  std::string        first;
  std::string        raised;
  while (std::getline(lines, line))
  {
    const auto colon = line.find("Error: ");
    if (colon != std::string::npos && colon > 0 && line.find(' ') > colon)
    {
      raised = line;
    }
    if (first.empty())
    {
      first = line;
    }
  }
  return raised.empty() ? first : raised;
}

std::string
ShapeToString(const c10::IntArrayRef & shape)
{
  std::ostringstream os;
  os << shape;
  return os.str();
}

/** Receives LibTorch's allocation reports (the profiler's memory hook, thread local, passed on to LibTorch's
 * worker threads with the rest of its thread-local state) and keeps the peak of the running total. */
/** The type of the running totals LibTorch passes to reportMemoryUsage: int64_t in 1.13, size_t in later releases. */
template <typename TMember>
struct ReportedTotalOf;
template <typename TClass, typename TResult, typename TPointer, typename TSize, typename TTotal, typename TReserved,
          typename TDevice>
struct ReportedTotalOf<TResult (TClass::*)(TPointer, TSize, TTotal, TReserved, TDevice)>
{
  using Type = TTotal;
};
using ReportedTotal = ReportedTotalOf<decltype(&c10::MemoryReportingInfoBase::reportMemoryUsage)>::Type;

class PeakAllocationRecorder : public c10::MemoryReportingInfoBase
{
public:
  void
  reportMemoryUsage(void *, int64_t allocationSize, ReportedTotal, ReportedTotal, c10::Device) override
  {
    const int64_t now = m_Current.fetch_add(allocationSize) + allocationSize;
    int64_t       peak = m_Peak.load();
    while (now > peak && !m_Peak.compare_exchange_weak(peak, now))
    {}
  }
  bool
  memoryProfilingEnabled() const override
  {
    return true;
  }
  int64_t
  GetPeak() const
  {
    return m_Peak.load();
  }

private:
  std::atomic<int64_t> m_Current{ 0 };
  std::atomic<int64_t> m_Peak{ 0 };
};

/** Whether the elements a tensor's sizes, strides and offset address all lie in its storage. */
bool
TensorFitsItsStorage(const torch::Tensor & tensor)
{
  if (!tensor.defined() || !tensor.has_storage())
  {
    return true;
  }
  try
  {
    return tensor.storage_offset() >= 0 &&
           at::detail::computeStorageNbytes(
             tensor.sizes(), tensor.strides(), tensor.dtype().itemsize(), tensor.storage_offset()) <=
             tensor.storage().nbytes();
  }
  catch (const std::exception &) // sizes, strides or offset that overflow (negative ones included)
  {
    return false;
  }
}

struct ProbeResult
{
  bool        ran{ false };
  int64_t     outputEdge{ 0 };
  int64_t     outputChannels{ 0 };
  std::string error{};
};
} // namespace

class UNetModel::Implementation
{
public:
  torch::jit::Module module{};
  torch::Device      device{ torch::kCPU };
  bool               loaded{ false };
  std::string        loadedFileName{};
  std::string        loadedDevice{};
  unsigned int       loadedRequestedDimension{ 0 };
  bool               loadedFreeze{ false };
  bool               frozen{ false };

  unsigned int  dimension{ 0 };
  unsigned int  inputChannels{ 0 };
  int64_t       outputChannels{ 0 };
  SizeValueType border{ 0 };
  SizeValueType granularity{ 1 };
  SizeValueType minimumInputSize{ 0 };
  // Forward-pass allocations of one tile: fixed + perInputVoxel * input voxels.
  double forwardBytesFixed{ 0.0 };
  double forwardBytesPerInputVoxel{ 0.0 };

  /** Sets the calling thread's LibTorch (OpenMP) thread count while it lives, and then gives the caller back its
   * own: a Python user's torch.set_num_threads must not change because a filter ran on their thread. */
  class ThreadCount
  {
  public:
    ITK_DISALLOW_COPY_AND_MOVE(ThreadCount);

    explicit ThreadCount(unsigned int numberOfThreads)
    {
      const int wanted =
        static_cast<int>(numberOfThreads > 0 ? numberOfThreads : MultiThreaderBase::GetGlobalDefaultNumberOfThreads());
      if (m_Callers != wanted)
      {
        at::set_num_threads(wanted);
      }
    }
    ~ThreadCount()
    {
      if (at::get_num_threads() != m_Callers)
      {
        at::set_num_threads(m_Callers);
      }
    }

  private:
    const int m_Callers{ at::get_num_threads() };
  };

  std::vector<int64_t>
  TorchShape(int64_t batch, int64_t channels, const std::vector<SizeValueType> & edges) const
  {
    // ITK's buffers run x fastest, which is the last axis of a contiguous N x C x (D x) H x W tensor.
    std::vector<int64_t> shape{ batch, channels };
    for (auto axis = static_cast<int>(dimension) - 1; axis >= 0; --axis)
    {
      shape.push_back(static_cast<int64_t>(edges[axis]));
    }
    return shape;
  }

  torch::Tensor
  Forward(const torch::Tensor & input)
  {
    std::vector<torch::jit::IValue> inputs{ input.to(device) };
    const torch::jit::IValue        output = module.forward(inputs);
    if (!output.isTensor())
    {
      throw std::runtime_error(std::string("the network returns a ") + output.tagKind() + ", not a tensor");
    }
    return output.toTensor();
  }

  /** Peak bytes LibTorch allocates while running the network on `input` (allocated by the caller). */
  double
  MeasureForwardBytes(const torch::Tensor & input)
  {
    auto recorder = std::make_shared<PeakAllocationRecorder>();
    {
      c10::DebugInfoGuard reporting(c10::DebugInfoKind::PROFILER_STATE, recorder);
      Forward(input);
    }
    return static_cast<double>(recorder->GetPeak());
  }

  ProbeResult
  Probe(int64_t channels, SizeValueType edge)
  {
    ProbeResult   result;
    torch::Tensor output;
    try
    {
      output = Forward(torch::zeros(TorchShape(1, channels, std::vector<SizeValueType>(dimension, edge))));
    }
    catch (const std::exception & error)
    {
      result.error = FirstLine(error.what());
      return result;
    }
    if (output.dim() != static_cast<int64_t>(dimension) + 2 || output.size(0) != 1)
    {
      itkGenericExceptionMacro("The network's output has shape "
                               << ShapeToString(output.sizes()) << " for an input of shape "
                               << ShapeToString(TorchShape(1, channels, std::vector<SizeValueType>(dimension, edge)))
                               << "; expected [batch, classes, spatial axes...] with " << dimension
                               << " spatial axes.");
    }
    for (unsigned int axis = 1; axis < dimension; ++axis)
    {
      if (output.size(2 + axis) != output.size(2))
      {
        itkGenericExceptionMacro("The network's output " << ShapeToString(output.sizes())
                                                         << " is not cubic for a cubic input of edge " << edge
                                                         << ": its spatial axes are not treated alike.");
      }
    }
    result.ran = true;
    result.outputChannels = output.size(1);
    result.outputEdge = output.size(2);
    return result;
  }

  /** Parses the device, loads the TorchScript file onto it, and sets the network to evaluation mode. */
  void
  Open(const std::string & fileName, const std::string & deviceName)
  {
    try
    {
      device = torch::Device(deviceName);
    }
    catch (const std::exception & error)
    {
      itkGenericExceptionMacro("\"" << deviceName << "\" is not a device LibTorch knows: " << FirstLine(error.what()));
    }
    if (device.is_cuda() && !torch::cuda::is_available())
    {
      itkGenericExceptionMacro("Device \"" << deviceName
                                           << "\" was asked for, but CUDA is not available to LibTorch here (no CUDA "
                                              "build or no visible GPU). Use device \"cpu\".");
    }
    if (!device.is_cpu() && !device.is_cuda())
    {
      itkGenericExceptionMacro("Device \"" << deviceName << "\" is not supported; use \"cpu\" or \"cuda[:N]\".");
    }
    try
    {
      module = torch::jit::load(fileName, device);
    }
    catch (const std::exception & error)
    {
      itkGenericExceptionMacro("Cannot load a TorchScript model from \"" << fileName
                                                                         << "\": " << FirstLine(error.what()));
    }
    module.eval();

    // LibTorch 1.13 takes a tensor's sizes, strides and offset from the file without comparing them with its
    // storage: in a corrupt file they would make the network read past its weights.
    for (const auto & attribute : module.named_attributes())
    {
      if (attribute.value.isTensor() && !TensorFitsItsStorage(attribute.value.toTensor()))
      {
        itkGenericExceptionMacro("The model file \"" << fileName << "\" is corrupt: tensor " << attribute.name
                                                     << " of shape "
                                                     << ShapeToString(attribute.value.toTensor().sizes())
                                                     << " reaches past the data stored for it.");
      }
    }
  }

  /** Sets the dimension from the first convolution weight (the first parameter of rank 3 or more: [out, in,
   * kernel...]), or from `requestedDimension` when there is none, and returns the channel counts to probe, likeliest
   * first: the weight's input channels, then 1 to 16. */
  std::vector<int64_t>
  ReadFirstConvolution(const std::string & fileName, unsigned int requestedDimension)
  {
    std::vector<int64_t> channelCandidates;
    for (const torch::Tensor & parameter : module.parameters())
    {
      if (parameter.dim() >= 3)
      {
        const auto networkDimension = static_cast<unsigned int>(parameter.dim() - 2);
        if (requestedDimension != 0 && networkDimension != requestedDimension)
        {
          itkGenericExceptionMacro("The network in \"" << fileName << "\" is " << networkDimension
                                                       << "-D (its first convolution weight has shape "
                                                       << ShapeToString(parameter.sizes()) << "), but the images are "
                                                       << requestedDimension << "-D.");
        }
        dimension = networkDimension;
        channelCandidates.push_back(parameter.size(1));
        break;
      }
    }
    if (dimension == 0)
    {
      dimension = requestedDimension;
    }
    if (dimension != 2 && dimension != 3)
    {
      itkGenericExceptionMacro("Cannot tell which image dimension the network in \""
                               << fileName << "\" takes (found " << dimension
                               << "); it has no convolution weight, so set ImageDimension to 2 or 3.");
    }
    // A network without a convolution weight (an analytic one, say) is tried with each channel count in turn.
    for (int64_t channels = 1; channels <= 16; ++channels)
    {
      if (std::find(channelCandidates.begin(), channelCandidates.end(), channels) == channelCandidates.end())
      {
        channelCandidates.push_back(channels);
      }
    }
    return channelCandidates;
  }

  /** Finds the input channels, the classes, the border, the size granularity and the smallest valid input edge by
   * running the network on cubic zero inputs. */
  void
  ProbeGeometry(const std::string & fileName, const std::vector<int64_t> & channelCandidates,
                SizeValueType maximumProbeSize)
  {
    // Find an edge the network runs on, doubling from 1.
    ProbeResult   running;
    SizeValueType runningEdge = 0;
    std::string   lastError; // for the likeliest channel count, the first candidate
    for (SizeValueType edge = 1; edge <= maximumProbeSize && !running.ran; edge *= 2)
    {
      for (const int64_t channels : channelCandidates)
      {
        running = Probe(channels, edge);
        if (running.ran)
        {
          inputChannels = static_cast<unsigned int>(channels);
          runningEdge = edge;
          break;
        }
        if (channels == channelCandidates.front())
        {
          lastError = running.error;
        }
      }
    }
    if (!running.ran)
    {
      itkGenericExceptionMacro("The network in \"" << fileName << "\" ran on no " << dimension
                                                   << "-D input of 1 to 16 channels and edges 1 to " << maximumProbeSize
                                                   << "; with " << channelCandidates.front() << " channel(s) and edge "
                                                   << maximumProbeSize << ": " << lastError);
    }
    outputChannels = running.outputChannels;

    // Step up one voxel at a time until two edges with the smallest loss, edge - output edge, are found: those are
    // consecutive valid edges. Larger losses belong to edges whose pooling grid is misaligned.
    const SizeValueType        scanLimit = runningEdge + 512;
    std::vector<SizeValueType> alignedEdges;
    int64_t                    smallestLoss = std::numeric_limits<int64_t>::max();
    for (SizeValueType edge = runningEdge; edge <= scanLimit && alignedEdges.size() < 2; ++edge)
    {
      const ProbeResult probe = edge == runningEdge ? running : Probe(inputChannels, edge);
      if (!probe.ran)
      {
        continue;
      }
      if (probe.outputChannels != outputChannels)
      {
        itkGenericExceptionMacro("The network's number of output channels changes with the input size ("
                                 << outputChannels << " and " << probe.outputChannels << ").");
      }
      const int64_t loss = static_cast<int64_t>(edge) - probe.outputEdge;
      if (loss < smallestLoss)
      {
        smallestLoss = loss;
        alignedEdges.assign(1, edge);
      }
      else if (loss == smallestLoss)
      {
        alignedEdges.push_back(edge);
      }
    }
    if (alignedEdges.size() < 2)
    {
      itkGenericExceptionMacro("Found no two valid input edges between "
                               << runningEdge << " and " << scanLimit << " for the network in \"" << fileName << "\".");
    }
    if (smallestLoss < 0 || smallestLoss % 2 != 0)
    {
      itkGenericExceptionMacro("The network in \"" << fileName << "\" changes a tile's edge by " << -smallestLoss
                                                   << "; only networks that lose the same border on both sides (or "
                                                      "none) are supported.");
    }
    border = static_cast<SizeValueType>(smallestLoss / 2);
    granularity = alignedEdges[1] - alignedEdges[0];

    // Walk down to the smallest edge that still gives an output, then confirm it runs.
    SizeValueType edge = alignedEdges[0];
    while (edge > granularity && edge - granularity > 2 * border)
    {
      edge -= granularity;
    }
    for (; edge < alignedEdges[0]; edge += granularity)
    {
      const ProbeResult probe = Probe(inputChannels, edge);
      if (probe.ran && probe.outputEdge == static_cast<int64_t>(edge - 2 * border))
      {
        break;
      }
    }
    minimumInputSize = edge;
  }

  /** Freezes the network and optimises it for inference; returns why not, or nothing. Freezing works on a copy, so a
   * failure leaves the network as loaded. */
  std::string
  Freeze()
  {
    try
    {
      torch::jit::Module frozenModule = torch::jit::freeze(module);
      module = torch::jit::optimize_for_inference(frozenModule);
      frozen = true;
      return {};
    }
    catch (const std::exception & error)
    {
      return FirstLine(error.what());
    }
  }

  /** Forward-pass memory, measured on the smallest tile and on one of about 2^18 voxels (enough for the linear term
   * to dominate, small enough to probe quickly), then extrapolated linearly in the input voxels. */
  void
  MeasureForwardMemory()
  {
    const auto    probeEdge = static_cast<SizeValueType>(std::pow(double{ 1 << 18 }, 1.0 / dimension));
    SizeValueType largeEdge = minimumInputSize + granularity;
    while (largeEdge + granularity <= probeEdge)
    {
      largeEdge += granularity;
    }
    double measured[2];
    double voxels[2];
    for (const int i : { 0, 1 })
    {
      const SizeValueType probe = i == 0 ? minimumInputSize : largeEdge;
      const torch::Tensor input =
        torch::zeros(TorchShape(1, inputChannels, std::vector<SizeValueType>(dimension, probe)));
      measured[i] = MeasureForwardBytes(input);
      voxels[i] = std::pow(static_cast<double>(probe), dimension);
    }
    forwardBytesPerInputVoxel = std::max(0.0, (measured[1] - measured[0]) / (voxels[1] - voxels[0]));
    forwardBytesFixed = std::max(0.0, measured[1] - forwardBytesPerInputVoxel * voxels[1]);
  }
};

UNetModel::UNetModel()
  : m_Implementation(std::make_unique<Implementation>())
{}

UNetModel::~UNetModel() = default;

bool
UNetModel::IsLoaded() const
{
  const Implementation & impl = *m_Implementation;
  return impl.loaded && impl.loadedFileName == m_FileName && impl.loadedDevice == m_Device &&
         impl.loadedRequestedDimension == m_ImageDimension && impl.loadedFreeze == m_Freeze;
}

bool
UNetModel::IsFrozen() const
{
  return this->IsLoaded() && m_Implementation->frozen;
}

void
UNetModel::Load()
{
  // Filters sharing a model may update on several threads at once, each loading it: one loads, the others then find
  // it loaded. Loads are rare, so one lock for all models is enough.
  static std::mutex                 loadMutex;
  const std::lock_guard<std::mutex> lock(loadMutex);
  if (this->IsLoaded())
  {
    return;
  }
  Implementation & impl = *m_Implementation;
  impl = Implementation{};
  if (m_FileName.empty())
  {
    itkExceptionMacro("No model file name is set.");
  }
  if (!std::ifstream(m_FileName).good())
  {
    itkExceptionMacro("The model file \"" << m_FileName << "\" does not exist or cannot be read.");
  }

  impl.Open(m_FileName, m_Device);
  const std::vector<int64_t> channelCandidates = impl.ReadFirstConvolution(m_FileName, m_ImageDimension);
  const Implementation::ThreadCount threadCount(m_NumberOfThreads);
  c10::InferenceMode inferenceMode;
  impl.ProbeGeometry(m_FileName, channelCandidates, m_MaximumProbeSize);
  // Frozen and optimised only once probed, with inputs of the probed channels and valid edges alone: with Debian's
  // LibTorch 1.13 a frozen network can crash the process, rather than throw, on an input it cannot take, which
  // probing tries on purpose.
  if (m_Freeze)
  {
    const std::string failure = impl.Freeze();
    if (!failure.empty())
    {
      itkWarningMacro("The network in \"" << m_FileName << "\" cannot be frozen (" << failure
                                          << "); it runs as saved.");
    }
  }
  impl.MeasureForwardMemory();

  impl.loaded = true;
  impl.loadedFreeze = m_Freeze;
  impl.loadedFileName = m_FileName;
  impl.loadedDevice = m_Device;
  impl.loadedRequestedDimension = m_ImageDimension;
}

unsigned int
UNetModel::GetNetworkDimension() const
{
  this->VerifyLoaded("GetNetworkDimension");
  return m_Implementation->dimension;
}

void
UNetModel::VerifyLoaded(const char * what) const
{
  if (!this->IsLoaded())
  {
    itkExceptionMacro(<< what << " needs a loaded model: call Load() first.");
  }
}

void
UNetModel::VerifyInputTileSize(const char * what, const TileSizeType & inputTileSize) const
{
  this->VerifyLoaded(what);
  const Implementation & impl = *m_Implementation;
  if (inputTileSize.size() != impl.dimension)
  {
    itkExceptionMacro("A tile of " << inputTileSize.size() << " axes was given to a " << impl.dimension
                                   << "-D network.");
  }
  // The network must never see an edge it was not probed to take: an optimised network can crash on one.
  for (const SizeValueType edge : inputTileSize)
  {
    if (edge < 2 * impl.border || !this->IsValidOutputSize(edge - 2 * impl.border))
    {
      itkExceptionMacro("Input tile edge " << edge << " is not valid for the network; valid edges are "
                                           << impl.minimumInputSize << " + k * " << impl.granularity << '.');
    }
  }
}

unsigned int
UNetModel::GetNumberOfInputChannels() const
{
  this->VerifyLoaded("GetNumberOfInputChannels");
  return m_Implementation->inputChannels;
}

unsigned int
UNetModel::GetNumberOfClasses() const
{
  this->VerifyLoaded("GetNumberOfClasses");
  return m_Implementation->outputChannels == 1 ? 2u : static_cast<unsigned int>(m_Implementation->outputChannels);
}

UNetModel::SizeValueType
UNetModel::GetBorder() const
{
  this->VerifyLoaded("GetBorder");
  return m_Implementation->border;
}

UNetModel::SizeValueType
UNetModel::GetSizeGranularity() const
{
  this->VerifyLoaded("GetSizeGranularity");
  return m_Implementation->granularity;
}

UNetModel::SizeValueType
UNetModel::GetMinimumInputSize() const
{
  this->VerifyLoaded("GetMinimumInputSize");
  return m_Implementation->minimumInputSize;
}

UNetModel::SizeValueType
UNetModel::GetMinimumOutputSize() const
{
  return this->GetMinimumInputSize() - 2 * this->GetBorder();
}

bool
UNetModel::IsValidOutputSize(SizeValueType outputSize) const
{
  const SizeValueType minimum = this->GetMinimumOutputSize();
  return outputSize >= minimum && (outputSize - minimum) % this->GetSizeGranularity() == 0;
}

UNetModel::SizeValueType
UNetModel::GetValidOutputSizeAtLeast(SizeValueType outputSize) const
{
  const SizeValueType minimum = this->GetMinimumOutputSize();
  const SizeValueType granularity = this->GetSizeGranularity();
  if (outputSize <= minimum)
  {
    return minimum;
  }
  return minimum + (outputSize - minimum + granularity - 1) / granularity * granularity;
}

UNetModel::SizeValueType
UNetModel::GetValidOutputSizeAtMost(SizeValueType outputSize) const
{
  const SizeValueType minimum = this->GetMinimumOutputSize();
  if (outputSize < minimum)
  {
    return 0;
  }
  return minimum + (outputSize - minimum) / this->GetSizeGranularity() * this->GetSizeGranularity();
}

double
UNetModel::GetEstimatedForwardBytes(unsigned int batchSize, const TileSizeType & inputTileSize) const
{
  this->VerifyLoaded("GetEstimatedForwardBytes");
  const Implementation & impl = *m_Implementation;
  double                 voxels = 1.0;
  for (const SizeValueType edge : inputTileSize)
  {
    voxels *= static_cast<double>(edge);
  }
  return batchSize * (impl.forwardBytesFixed + impl.forwardBytesPerInputVoxel * voxels);
}

double
UNetModel::MeasureForwardBytes(unsigned int batchSize, const TileSizeType & inputTileSize) const
{
  this->VerifyInputTileSize("MeasureForwardBytes", inputTileSize);
  Implementation & impl = *m_Implementation;
  const Implementation::ThreadCount threadCount(m_NumberOfThreads);
  c10::InferenceMode  inferenceMode;
  const torch::Tensor input = torch::zeros(impl.TorchShape(batchSize, impl.inputChannels, inputTileSize));
  try
  {
    return impl.MeasureForwardBytes(input);
  }
  catch (const std::exception & error)
  {
    itkExceptionMacro("The network failed on a batch of shape " << ShapeToString(input.sizes()) << ": "
                                                                << FirstLine(error.what()));
  }
}

void
UNetModel::PredictProbabilities(const float * input, unsigned int batchSize, const TileSizeType & inputTileSize,
                                float * probabilities) const
{
  this->VerifyInputTileSize("PredictProbabilities", inputTileSize);
  const Implementation & impl = *m_Implementation;
  const unsigned int     threads =
    m_NumberOfThreads > 0 ? m_NumberOfThreads : MultiThreaderBase::GetGlobalDefaultNumberOfThreads();
  // The tiles of a batch are independent, and on the CPU several smaller forward passes side by side, each on its
  // share of the threads, run a batch faster than one pass spreading each layer over all the threads (whose
  // synchronisation and serial parts then leave cores idle): on 2 cores, batches of four 2-D tiles ran 1.43x (median
  // of 9 rounds, paper-style U-Net, benchmarks/UNetSegmentationBenchmark) and 1.49x (same-padded U-Net, 8 pairs)
  // faster, with the same outputs bit for bit (a tile's scores do not depend on its batch). GPUs take the batch whole.
  const unsigned int passes = impl.device.is_cpu() ? std::max(1u, std::min(threads, batchSize)) : 1u;
  if (passes == 1)
  {
    this->PredictProbabilitiesInOnePass(input, batchSize, inputTileSize, probabilities, threads);
    return;
  }

  SizeValueType inputTileValues = impl.inputChannels;
  SizeValueType outputTileValues = this->GetNumberOfClasses();
  for (const SizeValueType edge : inputTileSize)
  {
    inputTileValues *= edge;
    outputTileValues *= edge - 2 * impl.border;
  }
  std::vector<std::exception_ptr> errors(passes);
  std::vector<std::thread>        helpers;
  const auto                      joinHelpers = [&helpers]() {
    for (std::thread & helper : helpers)
    {
      helper.join();
    }
  };
  try
  {
    unsigned int firstTile = 0;
    for (unsigned int pass = 0; pass < passes; ++pass)
    {
      const unsigned int tiles = batchSize / passes + (pass < batchSize % passes ? 1 : 0);
      const unsigned int passThreads = threads / passes + (pass < threads % passes ? 1 : 0);
      const auto         run = [=, &errors]() {
        try
        {
          this->PredictProbabilitiesInOnePass(input + firstTile * inputTileValues,
                                              tiles,
                                              inputTileSize,
                                              probabilities + firstTile * outputTileValues,
                                              passThreads);
        }
        catch (...)
        {
          errors[pass] = std::current_exception();
        }
      };
      // The calling thread runs the last pass itself.
      if (pass + 1 < passes)
      {
        helpers.emplace_back(run);
      }
      else
      {
        run();
      }
      firstTile += tiles;
    }
  }
  catch (...) // a thread that could not start
  {
    joinHelpers();
    throw;
  }
  joinHelpers();
  for (const std::exception_ptr & error : errors)
  {
    if (error)
    {
      std::rethrow_exception(error);
    }
  }
}

void
UNetModel::PredictProbabilitiesInOnePass(const float *        input,
                                         unsigned int         batchSize,
                                         const TileSizeType & inputTileSize,
                                         float *              probabilities,
                                         unsigned int         numberOfThreads) const
{
  Implementation &           impl = *m_Implementation;
  std::vector<SizeValueType> outputTileSize(impl.dimension);
  for (unsigned int axis = 0; axis < impl.dimension; ++axis)
  {
    outputTileSize[axis] = inputTileSize[axis] - 2 * impl.border;
  }

  // LibTorch's OpenMP thread count belongs to the calling thread.
  const Implementation::ThreadCount threadCount(numberOfThreads);
  c10::InferenceMode         inferenceMode;
  const std::vector<int64_t> inputShape = impl.TorchShape(batchSize, impl.inputChannels, inputTileSize);
  const std::vector<int64_t> expectedShape = impl.TorchShape(batchSize, impl.outputChannels, outputTileSize);
  torch::Tensor              scores;
  try
  {
    scores = impl.Forward(torch::from_blob(const_cast<float *>(input), inputShape, torch::kFloat32));
  }
  catch (const std::exception & error)
  {
    const std::string reason = FirstLine(error.what());
    if (dynamic_cast<const c10::OutOfMemoryError *>(&error) != nullptr ||
        reason.find("can't allocate memory") != std::string::npos)
    {
      // LibTorch's CPU allocator reports failure as a plain c10::Error with this message.
      MemoryAllocationError outOfMemory(__FILE__, __LINE__, "", ITK_LOCATION);
      outOfMemory.SetDescription("LibTorch could not allocate memory for a batch of shape " +
                                 ShapeToString(inputShape) + ": " + reason);
      throw outOfMemory;
    }
    itkExceptionMacro("The network failed on a batch of shape " << ShapeToString(inputShape) << ": " << reason);
  }
  if (scores.sizes() != c10::IntArrayRef(expectedShape))
  {
    itkExceptionMacro("The network's output has shape " << ShapeToString(scores.sizes()) << " for an input of shape "
                                                        << ShapeToString(inputShape) << "; expected "
                                                        << ShapeToString(expectedShape) << '.');
  }

  // Scores to probabilities voxel by voxel, in double, here rather than with torch::softmax: LibTorch's vectorised
  // kernels round a value differently depending on where it lies in the tensor, and a voxel's probability must not
  // depend on its place in the tile, or tilings and stream divisions would disagree in the last bit.
  const torch::Tensor scoresOnCpu = scores.to(torch::kCPU, torch::kFloat32).contiguous();
  const float *       scoreData = scoresOnCpu.data_ptr<float>();
  const auto          channelsOut = static_cast<SizeValueType>(impl.outputChannels);
  const SizeValueType classes = this->GetNumberOfClasses();
  SizeValueType       tileVoxels = 1;
  for (const SizeValueType edge : outputTileSize)
  {
    tileVoxels *= edge;
  }
  const SizeValueType voxels = batchSize * tileVoxels;
  // On LibTorch's threads, which have just run the network, rather than on a second pool (ITK's) competing with them
  // for the cores while they spin down.
  at::parallel_for(0, static_cast<int64_t>(voxels), int64_t{ 1 } << 14, [&](int64_t begin, int64_t end) {
    std::vector<double> exponentials(classes);
    for (auto v = static_cast<SizeValueType>(begin); v < static_cast<SizeValueType>(end); ++v)
    {
      const SizeValueType tile = v / tileVoxels;
      const SizeValueType voxel = v % tileVoxels;
      const float *       score = scoreData + tile * channelsOut * tileVoxels + voxel;
      float *             probability = probabilities + tile * classes * tileVoxels + voxel;
      if (channelsOut == 1)
      {
        const double foreground = 1.0 / (1.0 + std::exp(-static_cast<double>(score[0])));
        probability[0] = static_cast<float>(1.0 - foreground);
        probability[tileVoxels] = static_cast<float>(foreground);
        continue;
      }
      if (classes == 2)
      {
        // The two-class softmax is a sigmoid of the score difference: one exponential rather than two.
        const double second = 1.0 / (1.0 + std::exp(static_cast<double>(score[0]) - score[tileVoxels]));
        probability[0] = static_cast<float>(1.0 - second);
        probability[tileVoxels] = static_cast<float>(second);
        continue;
      }
      double largest = score[0];
      for (SizeValueType k = 1; k < classes; ++k)
      {
        largest = std::max(largest, static_cast<double>(score[k * tileVoxels]));
      }
      double total = 0.0;
      for (SizeValueType k = 0; k < classes; ++k)
      {
        exponentials[k] = std::exp(static_cast<double>(score[k * tileVoxels]) - largest);
        total += exponentials[k];
      }
      for (SizeValueType k = 0; k < classes; ++k)
      {
        probability[k * tileVoxels] = static_cast<float>(exponentials[k] / total);
      }
    }
  });
}

void
UNetModel::PrintSelf(std::ostream & os, Indent indent) const
{
  Superclass::PrintSelf(os, indent);
  os << indent << "FileName: " << m_FileName << std::endl;
  os << indent << "Device: " << m_Device << std::endl;
  os << indent << "ImageDimension: " << m_ImageDimension << std::endl;
  os << indent << "NumberOfThreads: " << m_NumberOfThreads << std::endl;
  os << indent << "Freeze: " << (m_Freeze ? "On" : "Off") << std::endl;
  os << indent << "MaximumProbeSize: " << m_MaximumProbeSize << std::endl;
  os << indent << "Loaded: " << (this->IsLoaded() ? "yes" : "no") << std::endl;
  if (this->IsLoaded())
  {
    os << indent << "NetworkDimension: " << this->GetNetworkDimension() << std::endl;
    os << indent << "NumberOfInputChannels: " << this->GetNumberOfInputChannels() << std::endl;
    os << indent << "NumberOfClasses: " << this->GetNumberOfClasses() << std::endl;
    os << indent << "Border: " << this->GetBorder() << std::endl;
    os << indent << "SizeGranularity: " << this->GetSizeGranularity() << std::endl;
    os << indent << "MinimumInputSize: " << this->GetMinimumInputSize() << std::endl;
    os << indent << "Frozen: " << (m_Implementation->frozen ? "yes" : "no") << std::endl;
  }
}

} // end namespace itk
