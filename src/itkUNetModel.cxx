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
#include "itkUNetMemoryAllocationError.h"
#include "itkUNetModelCard.h"
#include "itkUNetSpacingUnits.h"

#include "itkMacro.h"
#include "itkMultiThreaderBase.h"

#include <ATen/EmptyTensor.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <c10/core/Allocator.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <new>
#include <optional>
#include <sstream>
#include <thread>

namespace itk
{

namespace
{
/** `numberOfThreads`, or ITK's global default number of threads for 0. */
unsigned int
ThreadsOrGlobalDefault(unsigned int numberOfThreads)
{
  return numberOfThreads > 0 ? numberOfThreads : MultiThreaderBase::GetGlobalDefaultNumberOfThreads();
}

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

/** An ITK exception's description without the "ITK ERROR: " its macros start it with, for quoting in another. */
std::string
QuotedDescription(const ExceptionObject & error)
{
  const std::string description = error.GetDescription();
  const std::string prefix = "ITK ERROR: ";
  return description.compare(0, prefix.size(), prefix) == 0 ? description.substr(prefix.size()) : description;
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

/** Runs each of `runs` on a thread of its own (the last on the calling thread) and rethrows the first failure once
 * all have finished. */
void
RunSideBySide(const std::vector<std::function<void()>> & runs)
{
  std::vector<std::exception_ptr> errors(runs.size());
  std::vector<std::thread>        helpers;
  const auto                      joinHelpers = [&helpers]() {
    for (std::thread & helper : helpers)
    {
      helper.join();
    }
  };
  const auto run = [&runs, &errors](size_t k) {
    try
    {
      runs[k]();
    }
    catch (...)
    {
      errors[k] = std::current_exception();
    }
  };
  try
  {
    for (size_t k = 0; k + 1 < runs.size(); ++k)
    {
      helpers.emplace_back(run, k);
    }
  }
  catch (...) // a thread that could not start
  {
    joinHelpers();
    throw;
  }
  if (!runs.empty())
  {
    run(runs.size() - 1);
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

/** Throws the ITK exception for a forward pass that failed with `error` on an input of `inputShape`: a
 * MemoryAllocationError when LibTorch could not allocate, an ExceptionObject otherwise. */
[[noreturn]] void
ThrowForwardFailure(const std::exception & error, const std::vector<int64_t> & inputShape)
{
  const std::string reason = FirstLine(error.what());
  // LibTorch's CPU allocator reports failure as a plain c10::Error with this message.
  if (dynamic_cast<const c10::OutOfMemoryError *>(&error) != nullptr ||
      dynamic_cast<const std::bad_alloc *>(&error) != nullptr ||
      reason.find("can't allocate memory") != std::string::npos)
  {
    unet_detail::ThrowMemoryAllocationError(__FILE__,
                                            __LINE__,
                                            "LibTorch could not allocate memory for a batch of shape " +
                                              ShapeToString(inputShape) + ": " + reason);
  }
  itkGenericExceptionMacro("The network failed on a batch of shape " << ShapeToString(inputShape) << ": " << reason);
}

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

/** A network output that is no tensor (a tuple, list or dict: deep supervision, say): no input size changes that. */
struct NotATensor : std::runtime_error
{
  using std::runtime_error::runtime_error;
};

struct ProbeResult
{
  bool                 ran{ false };
  double               peakBytes{ 0.0 };
  std::vector<int64_t> outputEdges{}; // per axis, x first
  int64_t              outputChannels{ 0 };
  std::string          error{};
};

std::string
EdgesToString(const std::vector<SizeValueType> & edges)
{
  std::ostringstream os;
  for (size_t axis = 0; axis < edges.size(); ++axis)
  {
    os << (axis > 0 ? " x " : "") << edges[axis];
  }
  return os.str();
}
} // namespace

class UNetModel::Implementation
{
public:
  // A handle: forward() is not const, but running it changes nothing a caller sees, and several threads may run it
  // at once.
  mutable torch::jit::Module   module{};
  torch::Device                device{ torch::kCPU };
  Settings                     settings{}; // those it was loaded with
  FileStamp                    stamp{};    // of the file when it was opened
  bool                         frozen{ false };
  UNetNetworkGeometry          geometry{};
  std::optional<UNetModelCard> card{};
  int64_t                      outputChannels{ 0 }; // 1 for a network read as two classes through a sigmoid

  // Probing only: the budget, the largest allocation seen, and the most bytes a probe took per input value, from
  // which the next, larger probe is predicted and refused beyond the budget; and the caller's abort request.
  double                probeBudgetBytes{ 1024.0 * 1024.0 * 1024.0 };
  double                probePeakBytes{ 0.0 };
  double                probeBytesPerInputValue{ sizeof(float) };
  std::function<bool()> abortRequested{};

  /** Sets the calling thread's LibTorch (OpenMP) thread count while it lives, and then gives the caller back its
   * own: a Python user's torch.set_num_threads must not change because a filter ran on their thread. */
  class ThreadCount
  {
  public:
    ITK_DISALLOW_COPY_AND_MOVE(ThreadCount);

    explicit ThreadCount(unsigned int numberOfThreads)
    {
      const int wanted = static_cast<int>(ThreadsOrGlobalDefault(numberOfThreads));
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

  /** CUDA's automatic mixed precision in `type` on the calling thread while it lives, as `torch.autocast` enters and
   * leaves it: LibTorch's dispatcher then runs each eligible operation (convolutions, matrix products) in `type`. */
  class MixedPrecision
  {
  public:
    ITK_DISALLOW_COPY_AND_MOVE(MixedPrecision);

    explicit MixedPrecision(at::ScalarType type)
    {
      at::autocast::set_enabled(true);
      at::autocast::set_autocast_gpu_dtype(type);
      at::autocast::increment_nesting();
    }
    ~MixedPrecision()
    {
      // The casts cached for this pass's weights are dropped once the outermost user leaves.
      if (at::autocast::decrement_nesting() == 0)
      {
        at::autocast::clear_cache();
      }
      at::autocast::set_enabled(m_CallersEnabled);
      at::autocast::set_autocast_gpu_dtype(m_CallersType);
    }

  private:
    const bool           m_CallersEnabled{ at::autocast::is_enabled() };
    const at::ScalarType m_CallersType{ at::autocast::get_autocast_gpu_dtype() };
  };

  std::vector<int64_t>
  TorchShape(int64_t batch, int64_t channels, const std::vector<SizeValueType> & edges) const
  {
    // ITK's buffers run x fastest, which is the last axis of a contiguous N x C x (D x) H x W tensor.
    std::vector<int64_t> shape{ batch, channels };
    for (auto axis = static_cast<int>(geometry.Dimension) - 1; axis >= 0; --axis)
    {
      shape.push_back(static_cast<int64_t>(edges[axis]));
    }
    return shape;
  }

  torch::Tensor
  Forward(const torch::Tensor & input) const
  {
    std::vector<torch::jit::IValue> inputs{ input.to(device) };
    std::optional<MixedPrecision>   mixedPrecision;
    if (settings.Precision != PrecisionEnum::Float32)
    {
      mixedPrecision.emplace(settings.Precision == PrecisionEnum::Float16 ? at::kHalf : at::kBFloat16);
    }
    const torch::jit::IValue output = module.forward(inputs);
    if (!output.isTensor())
    {
      throw NotATensor(std::string("the network returns a ") + output.tagKind() + ", not a tensor");
    }
    return output.toTensor();
  }

  /** Peak bytes LibTorch allocates while running the network on `input` (allocated by the caller). */
  double
  MeasureForwardBytes(const torch::Tensor & input) const
  {
    auto recorder = std::make_shared<PeakAllocationRecorder>();
    {
      c10::DebugInfoGuard reporting(c10::DebugInfoKind::PROFILER_STATE, recorder);
      Forward(input);
    }
    return static_cast<double>(recorder->GetPeak());
  }

  /** Runs the network once on a zero input of `edges` (x first); a failure is a result, not an exception, but an
   * output that is no [batch, classes, spatial axes...] tensor is an exception. */
  ProbeResult
  Probe(int64_t channels, const std::vector<SizeValueType> & edges)
  {
    if (abortRequested && abortRequested())
    {
      ProcessAborted aborted(__FILE__, __LINE__);
      aborted.SetDescription("Loading the model was aborted while its network was being probed.");
      throw aborted;
    }
    ProbeResult   result;
    torch::Tensor output;
    auto          recorder = std::make_shared<PeakAllocationRecorder>();
    try
    {
      c10::DebugInfoGuard reporting(c10::DebugInfoKind::PROFILER_STATE, recorder);
      output = Forward(torch::zeros(TorchShape(1, channels, edges)));
    }
    catch (const NotATensor & error)
    {
      itkGenericExceptionMacro("The network's output is no tensor: " << error.what()
                                                                     << "; a U-Net must return one tensor of scores.");
    }
    catch (const std::exception & error)
    {
      result.error = FirstLine(error.what());
    }
    result.peakBytes = static_cast<double>(recorder->GetPeak());
    probePeakBytes = std::max(probePeakBytes, result.peakBytes);
    double values = static_cast<double>(channels);
    for (const SizeValueType edge : edges)
    {
      values *= static_cast<double>(edge);
    }
    probeBytesPerInputValue = std::max(probeBytesPerInputValue, result.peakBytes / values);
    if (!result.error.empty())
    {
      return result;
    }
    if (output.dim() != static_cast<int64_t>(geometry.Dimension) + 2 || output.size(0) != 1)
    {
      itkGenericExceptionMacro(
        "The network's output has shape "
        << ShapeToString(output.sizes()) << " for an input of shape " << ShapeToString(TorchShape(1, channels, edges))
        << "; expected [batch, classes, spatial axes...] with " << geometry.Dimension << " spatial axes.");
    }
    result.ran = true;
    result.outputChannels = output.size(1);
    for (unsigned int axis = 0; axis < geometry.Dimension; ++axis)
    {
      result.outputEdges.push_back(output.size(1 + geometry.Dimension - axis));
    }
    return result;
  }

  ProbeResult
  ProbeCube(int64_t channels, SizeValueType edge)
  {
    return Probe(channels, std::vector<SizeValueType>(geometry.Dimension, edge));
  }
  /** Class probabilities from the scores of `batch` tiles of `tileVoxels` voxels (class by class, x fastest): softmax,
   * or a sigmoid for one output channel. Voxel by voxel, in double, rather than with torch::softmax: LibTorch's
   * vectorised kernels round a value differently depending on where it lies in the tensor, and a voxel's probability
   * must not depend on its place in the tile, or tilings and stream divisions would disagree in the last bit. Throws
   * UNetNonFiniteOutputError for a score that is not finite. */
  void
  ScoresToProbabilities(const float * scores, SizeValueType batch, SizeValueType tileVoxels,
                        float * probabilities) const
  {
    const auto          channelsOut = static_cast<SizeValueType>(outputChannels);
    const SizeValueType classes = geometry.Classes;
    // On LibTorch's threads, which have just run the network, rather than on a second pool (ITK's) competing with
    // them for the cores while they spin down.
    at::parallel_for(0, static_cast<int64_t>(batch * tileVoxels), int64_t{ 1 } << 14, [&](int64_t begin, int64_t end) {
      std::vector<double> exponentials(classes);
      for (auto v = static_cast<SizeValueType>(begin); v < static_cast<SizeValueType>(end); ++v)
      {
        const SizeValueType tile = v / tileVoxels;
        const SizeValueType voxel = v % tileVoxels;
        const float *       score = scores + tile * channelsOut * tileVoxels + voxel;
        for (SizeValueType k = 0; k < channelsOut; ++k)
        {
          if (!std::isfinite(score[k * tileVoxels]))
          {
            throw UNetNonFiniteOutputError(__FILE__,
                                           __LINE__,
                                           static_cast<unsigned int>(tile),
                                           static_cast<unsigned int>(k),
                                           voxel,
                                           score[k * tileVoxels]);
          }
        }
        VoxelProbabilities(
          score, channelsOut, classes, tileVoxels, exponentials, probabilities + tile * classes * tileVoxels + voxel);
      }
    });
  }

  /** One voxel's probabilities from its scores (`tileVoxels` apart), into `probability` (as far apart). */
  static void
  VoxelProbabilities(const float * score, SizeValueType channelsOut, SizeValueType classes, SizeValueType tileVoxels,
                     std::vector<double> & exponentials, float * probability)
  {
    if (channelsOut == 1 || classes == 2)
    {
      // One channel: a sigmoid of it; two classes: the softmax is a sigmoid of the score difference.
      const double logit = channelsOut == 1 ? score[0] : static_cast<double>(score[tileVoxels]) - score[0];
      const double second = 1.0 / (1.0 + std::exp(-logit));
      probability[0] = static_cast<float>(1.0 - second);
      probability[tileVoxels] = static_cast<float>(second);
      return;
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
    if (settings.Precision != PrecisionEnum::Float32 && !device.is_cuda())
    {
      itkGenericExceptionMacro("Precision " << settings.Precision << " runs on a CUDA device only; on device \""
                                            << deviceName << "\" use Float32.");
    }
    torch::jit::ExtraFilesMap extraFiles{ { UNetModelCard::ArchiveFileName, "" } };
    try
    {
      module = torch::jit::load(fileName, device, extraFiles);
    }
    catch (const std::exception & error)
    {
      itkGenericExceptionMacro("Cannot load a TorchScript model from \"" << fileName
                                                                         << "\": " << FirstLine(error.what()));
    }
    const std::string & cardText = extraFiles[UNetModelCard::ArchiveFileName];
    if (!cardText.empty())
    {
      try
      {
        card = UNetModelCard::FromJSON(cardText);
      }
      catch (const ExceptionObject & error)
      {
        itkGenericExceptionMacro("The model file \"" << fileName
                                                     << "\" has a bad model card: " << QuotedDescription(error));
      }
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

  /** Sets the geometry.Dimension from the first convolution weight (the first parameter of rank 3 or more: [out, in,
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
        geometry.Dimension = networkDimension;
        channelCandidates.push_back(parameter.size(1));
        break;
      }
    }
    if (geometry.Dimension == 0)
    {
      geometry.Dimension = requestedDimension;
    }
    if (geometry.Dimension != 2 && geometry.Dimension != 3)
    {
      itkGenericExceptionMacro("Cannot tell which image dimension the network in \""
                               << fileName << "\" takes (found " << geometry.Dimension
                               << "); it has no convolution weight, so set ImageDimension to 2 or 3.");
    }
    // A network without a convolution weight (an analytic one, say) is tried with each channel count in turn; one
    // with a weight takes the weight's input channels.
    if (channelCandidates.empty())
    {
      for (int64_t channels = 1; channels <= 16; ++channels)
      {
        channelCandidates.push_back(channels);
      }
    }
    return channelCandidates;
  }

  /** What probing learns of one axis: the edges with the smallest loss (input edge - output edge) found so far. */
  struct AxisScan
  {
    int64_t                    smallestLoss{ std::numeric_limits<int64_t>::max() };
    std::vector<SizeValueType> alignedEdges{};

    void
    Add(SizeValueType edge, int64_t outputEdge)
    {
      const int64_t loss = static_cast<int64_t>(edge) - outputEdge;
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
  };

  /** Finds the input channels and an edge the network runs on as a cube, doubling from 1. */
  SizeValueType
  FindRunningEdge(const std::string & fileName, const std::vector<int64_t> & channelCandidates,
                  SizeValueType maximumProbeSize)
  {
    std::string   lastError; // for the likeliest channel count, the first candidate
    SizeValueType lastEdge = 0;
    for (SizeValueType edge = 1; edge <= maximumProbeSize; edge *= 2)
    {
      bool tried = false;
      for (const int64_t channels : channelCandidates)
      {
        // Never a probe that would take more than the budget, predicted from the probes so far.
        const double predicted = probeBytesPerInputValue * static_cast<double>(channels) *
                                 std::pow(static_cast<double>(edge), geometry.Dimension);
        if (predicted > probeBudgetBytes)
        {
          continue;
        }
        tried = true;
        const ProbeResult probe = ProbeCube(channels, edge);
        if (probe.ran && probe.outputChannels < 1)
        {
          itkGenericExceptionMacro("The network in \"" << fileName << "\" has no output channel: it scores no class.");
        }
        if (probe.ran)
        {
          geometry.InputChannels = static_cast<unsigned int>(channels);
          outputChannels = probe.outputChannels;
          return edge;
        }
        if (channels == channelCandidates.front())
        {
          lastError = probe.error;
        }
      }
      if (!tried)
      {
        break;
      }
      lastEdge = edge;
    }
    itkGenericExceptionMacro("The network in \""
                             << fileName << "\" ran on no " << geometry.Dimension << "-D input of "
                             << (channelCandidates.size() == 1 ? "its " : "1 to 16 ") << "channels and edges 1 to "
                             << lastEdge << " (larger ones would take "
                             << "more than the probing budget of " << probeBudgetBytes / (1024.0 * 1024.0)
                             << " MB, the ProbeMemoryBudget a filter sets to its MemoryBudget, "
                             << "or more than " << maximumProbeSize << "); with " << channelCandidates.front()
                             << " channel(s) and edge " << lastEdge << ": " << lastError);
  }

  ProbeResult
  ProbeWithChannels(const std::vector<SizeValueType> & edges)
  {
    ProbeResult probe = Probe(geometry.InputChannels, edges);
    if (probe.ran && probe.outputChannels != outputChannels)
    {
      itkGenericExceptionMacro("The network's number of output channels changes with the input size ("
                               << outputChannels << " and " << probe.outputChannels << ").");
    }
    return probe;
  }

  /** A smaller input than the running cube, so that the probes that follow cost less: each axis halved while the
   * network still runs (networks that pool some axes less than others run on shorter edges along those). */
  std::vector<SizeValueType>
  ShrinkRunningShape(SizeValueType runningEdge)
  {
    std::vector<SizeValueType> shape(geometry.Dimension, runningEdge);
    for (unsigned int axis = 0; axis < geometry.Dimension; ++axis)
    {
      while (shape[axis] > 1)
      {
        std::vector<SizeValueType> halved = shape;
        halved[axis] /= 2;
        if (!ProbeWithChannels(halved).ran)
        {
          break;
        }
        shape = halved;
      }
    }
    return shape;
  }

  /** Steps every edge of `runningShape` up one voxel at a time until every axis has two edges with its smallest loss:
   * consecutive valid edges (larger losses belong to edges whose pooling grid is misaligned). Output edges follow
   * each input edge axis by axis, so one scan serves all axes. Returns whether every step ran. */
  bool
  ScanShapes(const std::vector<SizeValueType> & runningShape, std::vector<AxisScan> & scans)
  {
    constexpr SizeValueType scanLimit = 1024;
    bool                    allRan = true;
    const auto              complete = [&scans]() {
      return std::all_of(
        scans.begin(), scans.end(), [](const AxisScan & scan) { return scan.alignedEdges.size() >= 2; });
    };
    for (SizeValueType step = 0; step <= scanLimit && !complete(); ++step)
    {
      std::vector<SizeValueType> edges = runningShape;
      for (SizeValueType & edge : edges)
      {
        edge += step;
      }
      const ProbeResult probe = ProbeWithChannels(edges);
      allRan = allRan && probe.ran;
      for (unsigned int axis = 0; probe.ran && axis < geometry.Dimension; ++axis)
      {
        scans[axis].Add(edges[axis], probe.outputEdges[axis]);
      }
    }
    if (!complete())
    {
      itkGenericExceptionMacro("Found no two valid input edges along every axis within "
                               << scanLimit << " voxels above " << EdgesToString(runningShape) << '.');
    }
    return allRan;
  }

  /** Where the scan failed on some steps (a same-padded network's concatenation, say), an axis that pools less than
   * the others looks as coarse as they are: its edges between the scan's valid ones are tried alone, the other axes
   * held at a valid edge. */
  void
  RefineFactor(unsigned int axis, const std::vector<SizeValueType> & base, const AxisScan & scan)
  {
    for (SizeValueType step = 1; step < geometry.DownsamplingFactor[axis]; ++step)
    {
      std::vector<SizeValueType> edges = base;
      edges[axis] += step;
      const ProbeResult probe = ProbeWithChannels(edges);
      if (probe.ran && static_cast<int64_t>(edges[axis]) - probe.outputEdges[axis] == scan.smallestLoss)
      {
        geometry.DownsamplingFactor[axis] = step;
        return;
      }
    }
  }

  /** Throws unless the valid edges along `axis` are regular: the edge two factors past `base` (a valid one) is valid
   * too. */
  void
  ConfirmRegularEdges(const std::string & fileName, unsigned int axis, const std::vector<SizeValueType> & base,
                      int64_t smallestLoss)
  {
    std::vector<SizeValueType> edges = base;
    edges[axis] += 2 * geometry.DownsamplingFactor[axis];
    const ProbeResult probe = ProbeWithChannels(edges);
    if (!probe.ran || static_cast<int64_t>(edges[axis]) - probe.outputEdges[axis] != smallestLoss)
    {
      itkGenericExceptionMacro("The network in \""
                               << fileName << "\" has no regular valid input edges along axis " << axis << ": edges "
                               << base[axis] << " and " << base[axis] + geometry.DownsamplingFactor[axis]
                               << " lose the fewest voxels (" << smallestLoss << ") of those tried up to "
                               << base[axis] + geometry.DownsamplingFactor[axis] << ", but edge " << edges[axis]
                               << (probe.ran ? " loses more" : " fails") << '.');
    }
  }

  /** The smallest valid edge along `axis`: down from `base` by the geometry.DownsamplingFactor while an output remains,
   * confirmed by running it (the other axes held at `base`). */
  SizeValueType
  FindMinimumEdge(unsigned int axis, const std::vector<SizeValueType> & base)
  {
    SizeValueType edge = base[axis];
    while (edge > geometry.DownsamplingFactor[axis] &&
           edge - geometry.DownsamplingFactor[axis] > 2 * geometry.Border[axis])
    {
      edge -= geometry.DownsamplingFactor[axis];
    }
    for (; edge < base[axis]; edge += geometry.DownsamplingFactor[axis])
    {
      std::vector<SizeValueType> edges = base;
      edges[axis] = edge;
      const ProbeResult probe = ProbeWithChannels(edges);
      if (probe.ran && probe.outputEdges[axis] == static_cast<int64_t>(edge - 2 * geometry.Border[axis]))
      {
        break;
      }
    }
    return edge;
  }

  /** Whether the network maps `edges` to `edges - 2 * geometry.Border` on every axis; throws, naming `what` and the
   * sizes tried, when not. */
  void
  ConfirmGeometry(const std::string & fileName, const std::vector<SizeValueType> & edges, const char * what)
  {
    const ProbeResult probe = ProbeWithChannels(edges);
    bool              expected = probe.ran;
    for (unsigned int axis = 0; expected && axis < geometry.Dimension; ++axis)
    {
      expected = probe.outputEdges[axis] == static_cast<int64_t>(edges[axis] - 2 * geometry.Border[axis]);
    }
    if (!expected)
    {
      std::ostringstream got;
      if (probe.ran)
      {
        got << "gives an output of "
            << EdgesToString(std::vector<SizeValueType>(probe.outputEdges.begin(), probe.outputEdges.end()));
      }
      else
      {
        got << "fails: " << probe.error;
      }
      itkGenericExceptionMacro("The network in \"" << fileName << "\" is inconsistent between " << what
                                                   << ": probed per axis, border " << EdgesToString(geometry.Border)
                                                   << ", downsampling factor "
                                                   << EdgesToString(geometry.DownsamplingFactor) << ", smallest input "
                                                   << EdgesToString(geometry.MinimumInputSize) << "; but an input of "
                                                   << EdgesToString(edges) << ' ' << got.str() << '.');
    }
  }

  /** Finds the input channels, the classes and, per axis, the geometry.Border, the downsampling
   * geometry.DownsamplingFactor and the smallest valid input edge by running the network on zero inputs. */
  void
  ProbeGeometry(const std::string & fileName, const std::vector<int64_t> & channelCandidates,
                SizeValueType maximumProbeSize)
  {
    const SizeValueType   runningEdge = FindRunningEdge(fileName, channelCandidates, maximumProbeSize);
    std::vector<AxisScan> scans(geometry.Dimension);
    const bool            everyStepRan = ScanShapes(ShrinkRunningShape(runningEdge), scans);

    std::vector<SizeValueType> base(geometry.Dimension);
    geometry.Border.assign(geometry.Dimension, 0);
    geometry.DownsamplingFactor.assign(geometry.Dimension, 1);
    for (unsigned int axis = 0; axis < geometry.Dimension; ++axis)
    {
      const std::vector<SizeValueType> & aligned = scans[axis].alignedEdges;
      if (scans[axis].smallestLoss < 0 || scans[axis].smallestLoss % 2 != 0)
      {
        itkGenericExceptionMacro("The network in \"" << fileName << "\" changes a tile's edge along axis " << axis
                                                     << " by " << -scans[axis].smallestLoss
                                                     << "; only networks that lose the same border on both sides "
                                                        "(or none) are supported.");
      }
      base[axis] = aligned[0];
      geometry.Border[axis] = static_cast<SizeValueType>(scans[axis].smallestLoss / 2);
      geometry.DownsamplingFactor[axis] = aligned[1] - aligned[0];
    }
    for (unsigned int axis = 0; axis < geometry.Dimension; ++axis)
    {
      if (!everyStepRan)
      {
        RefineFactor(axis, base, scans[axis]);
      }
      ConfirmRegularEdges(fileName, axis, base, scans[axis].smallestLoss);
    }
    geometry.MinimumInputSize.assign(geometry.Dimension, 0);
    for (unsigned int axis = 0; axis < geometry.Dimension; ++axis)
    {
      geometry.MinimumInputSize[axis] = FindMinimumEdge(axis, base);
    }
    ConfirmGeometry(fileName, geometry.MinimumInputSize, "axes");
    std::vector<SizeValueType> next = geometry.MinimumInputSize;
    for (unsigned int axis = 0; axis < geometry.Dimension; ++axis)
    {
      next[axis] += geometry.DownsamplingFactor[axis];
    }
    ConfirmGeometry(fileName, next, "sizes");
    geometry.Classes = outputChannels == 1 ? 2u : static_cast<unsigned int>(outputChannels);
  }

  /** Throws unless the model card, if any, fits the probed network. */
  void
  VerifyModelCard(const std::string & fileName) const
  {
    if (!card)
    {
      return;
    }
    try
    {
      card->VerifyAgainst(geometry.Dimension, geometry.InputChannels, geometry.Classes);
    }
    catch (const ExceptionObject & error)
    {
      itkGenericExceptionMacro("The model card of \"" << fileName
                                                      << "\" does not fit its network: " << QuotedDescription(error));
    }
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
    const auto probeEdge = static_cast<SizeValueType>(std::pow(double{ 1 << 18 }, 1.0 / geometry.Dimension));
    std::vector<SizeValueType> large(geometry.Dimension);
    for (unsigned int axis = 0; axis < geometry.Dimension; ++axis)
    {
      large[axis] = geometry.MinimumInputSize[axis] + geometry.DownsamplingFactor[axis];
      while (large[axis] + geometry.DownsamplingFactor[axis] <= probeEdge)
      {
        large[axis] += geometry.DownsamplingFactor[axis];
      }
    }
    double measured[2];
    double voxels[2];
    for (const int i : { 0, 1 })
    {
      const std::vector<SizeValueType> & probe = i == 0 ? geometry.MinimumInputSize : large;
      try
      {
        measured[i] = MeasureForwardBytes(torch::zeros(TorchShape(1, geometry.InputChannels, probe)));
      }
      catch (const std::exception & error)
      {
        itkGenericExceptionMacro("The network fails on an input of "
                                 << EdgesToString(probe)
                                 << " voxels, valid by its probed geometry: " << FirstLine(error.what()));
      }
      voxels[i] = 1.0;
      for (const SizeValueType edge : probe)
      {
        voxels[i] *= static_cast<double>(edge);
      }
    }
    geometry.ForwardBytesPerInputVoxel = std::max(0.0, (measured[1] - measured[0]) / (voxels[1] - voxels[0]));
    geometry.ForwardBytesFixed = std::max(0.0, measured[1] - geometry.ForwardBytesPerInputVoxel * voxels[1]);
  }
};

UNetNonFiniteOutputError::UNetNonFiniteOutputError(const char * file, unsigned int line, unsigned int batchTile,
                                                   unsigned int channel, SizeValueType voxel, double score)
  : ExceptionObject(file, line, "", ITK_LOCATION)
  , m_BatchTile(batchTile)
  , m_Channel(channel)
  , m_Voxel(voxel)
{
  std::ostringstream description;
  description << "The network's output holds a non-finite score (" << score << ") for output channel " << channel
              << " at voxel " << voxel << " of tile " << batchTile << " of its batch.";
  this->SetDescription(description.str());
}

UNetModel::UNetModel() = default;

UNetModel::~UNetModel() = default;

UNetModel::FileStamp
UNetModel::ReadFileStamp(const std::string & fileName)
{
  std::error_code error;
  FileStamp       stamp;
  const auto      modified = std::filesystem::last_write_time(fileName, error);
  if (error)
  {
    return stamp;
  }
  const auto size = std::filesystem::file_size(fileName, error);
  if (error)
  {
    return stamp;
  }
  stamp.Exists = true;
  stamp.ModificationTime = std::chrono::duration_cast<std::chrono::nanoseconds>(modified.time_since_epoch()).count();
  stamp.Size = size;
  return stamp;
}

UNetModel::Settings
UNetModel::CopySettings() const
{
  const std::lock_guard<std::mutex> lock(m_StateMutex);
  return m_Settings;
}

template <typename TValue>
void
UNetModel::SetSetting(TValue Settings::*setting, const TValue & value, bool modifies)
{
  bool changed = false;
  {
    const std::lock_guard<std::mutex> lock(m_StateMutex);
    changed = !(m_Settings.*setting == value);
    m_Settings.*setting = value;
  }
  if (changed && modifies)
  {
    this->Modified();
  }
}

void
UNetModel::SetFileName(const std::string & fileName)
{
  this->SetSetting(&Settings::FileName, fileName, true);
}
std::string
UNetModel::GetFileName() const
{
  return this->CopySettings().FileName;
}
void
UNetModel::SetImageDimension(unsigned int imageDimension)
{
  this->SetSetting(&Settings::ImageDimension, imageDimension, true);
}
unsigned int
UNetModel::GetImageDimension() const
{
  return this->CopySettings().ImageDimension;
}
void
UNetModel::SetDevice(const std::string & device)
{
  this->SetSetting(&Settings::Device, device, true);
}
std::string
UNetModel::GetDevice() const
{
  return this->CopySettings().Device;
}
void
UNetModel::SetNumberOfThreads(unsigned int numberOfThreads)
{
  this->SetSetting(&Settings::NumberOfThreads, numberOfThreads, false);
}
unsigned int
UNetModel::GetNumberOfThreads() const
{
  return this->CopySettings().NumberOfThreads;
}

void
UNetModel::SetPrecision(PrecisionEnum precision)
{
  this->SetSetting(&Settings::Precision, precision, true);
}
UNetModel::PrecisionEnum
UNetModel::GetPrecision() const
{
  return this->CopySettings().Precision;
}

unsigned int
UNetModel::GetNumberOfThreadsInUse() const
{
  return ThreadsOrGlobalDefault(this->GetNumberOfThreads());
}
void
UNetModel::SetFreeze(bool freeze)
{
  this->SetSetting(&Settings::Freeze, freeze, true);
}
bool
UNetModel::GetFreeze() const
{
  return this->CopySettings().Freeze;
}
void
UNetModel::SetMaximumProbeSize(SizeValueType edge)
{
  this->SetSetting(&Settings::MaximumProbeSize, edge, false);
}
UNetModel::SizeValueType
UNetModel::GetMaximumProbeSize() const
{
  return this->CopySettings().MaximumProbeSize;
}
void
UNetModel::SetProbeMemoryBudget(double megabytes)
{
  this->SetSetting(&Settings::ProbeMemoryBudget, megabytes, false);
}
double
UNetModel::GetProbeMemoryBudget() const
{
  return this->CopySettings().ProbeMemoryBudget;
}

bool
UNetModel::LoadedWith(const Implementation & network, const Settings & settings)
{
  // A network loaded for either dimension (0) serves a request for the dimension it has.
  const unsigned int loadedFor = network.settings.ImageDimension;
  const bool         dimensionFits =
    settings.ImageDimension == loadedFor || (loadedFor == 0 && settings.ImageDimension == network.geometry.Dimension);
  return network.settings.FileName == settings.FileName && network.settings.Device == settings.Device &&
         network.settings.Precision == settings.Precision && network.settings.Freeze == settings.Freeze &&
         dimensionFits;
}

bool
UNetModel::IsLoaded() const
{
  LoadedNetwork network;
  Settings      settings;
  {
    const std::lock_guard<std::mutex> lock(m_StateMutex);
    network = m_LoadedNetwork;
    settings = m_Settings;
  }
  return network && LoadedWith(*network, settings) && ReadFileStamp(settings.FileName) == network->stamp;
}

ModifiedTimeType
UNetModel::GetMTime() const
{
  const std::lock_guard<std::mutex> lock(m_StateMutex);
  if (m_LoadedNetwork && m_LoadedNetwork->settings.FileName == m_Settings.FileName)
  {
    const FileStamp onDisk = ReadFileStamp(m_Settings.FileName);
    if (!(onDisk == m_LoadedNetwork->stamp) && !(onDisk == m_ChangedFileStamp))
    {
      m_ChangedFileStamp = onDisk;
      m_FileChangedTime.Modified();
    }
  }
  return std::max(Superclass::GetMTime(), m_FileChangedTime.GetMTime());
}

bool
UNetModel::IsFrozen() const
{
  return this->IsLoaded() && this->GetLoadedNetwork("IsFrozen")->frozen;
}

void
UNetModel::Load()
{
  this->Load(std::function<bool()>());
}

void
UNetModel::Load(const std::function<bool()> & abortRequested)
{
  const std::lock_guard<std::mutex> loading(m_LoadMutex);
  if (this->IsLoaded())
  {
    return;
  }
  const Settings settings = this->CopySettings();
  LoadedNetwork  network = this->LoadNetwork(settings, abortRequested);
  bool           settingsChanged = false;
  {
    const std::lock_guard<std::mutex> lock(m_StateMutex);
    m_LoadedNetwork = network;
    m_ChangedFileStamp = FileStamp();
    // Settings changed while loading (by another thread) leave this load not loaded for them: the next Load() loads
    // again.
    settingsChanged = !LoadedWith(*network, m_Settings);
  }
  if (!settingsChanged)
  {
    this->Modified();
  }
}

UNetModel::LoadedNetwork
UNetModel::LoadNetwork(const Settings & settings, const std::function<bool()> & abortRequested)
{
  const std::string & fileName = settings.FileName;
  if (fileName.empty())
  {
    itkExceptionMacro("No model file name is set.");
  }
  auto network = std::make_shared<Implementation>();
  network->settings = settings;
  network->stamp = ReadFileStamp(fileName);
  if (!network->stamp.Exists || !std::ifstream(fileName).good())
  {
    itkExceptionMacro("The model file \"" << fileName << "\" does not exist or cannot be read.");
  }
  network->probeBudgetBytes = settings.ProbeMemoryBudget * 1024.0 * 1024.0;
  network->abortRequested = abortRequested;
  const auto keepProbePeak = [this, &network]() {
    const std::lock_guard<std::mutex> lock(m_StateMutex);
    m_ProbePeakBytes = network->probePeakBytes;
  };
  try
  {
    network->Open(fileName, settings.Device);
    const std::vector<int64_t> channelCandidates = network->ReadFirstConvolution(fileName, settings.ImageDimension);
    const Implementation::ThreadCount threadCount(settings.NumberOfThreads);
    c10::InferenceMode                inferenceMode;
    network->ProbeGeometry(fileName, channelCandidates, settings.MaximumProbeSize);
    keepProbePeak();
    network->VerifyModelCard(fileName);
    // Frozen and optimised only once probed, with inputs of the probed channels and valid edges alone: with Debian's
    // LibTorch 1.13 a frozen network can crash the process, rather than throw, on an input it cannot take, which
    // probing tries on purpose.
    if (settings.Freeze)
    {
      const std::string failure = network->Freeze();
      if (!failure.empty())
      {
        itkWarningMacro("The network in \"" << fileName << "\" cannot be frozen (" << failure
                                            << "); it runs as saved.");
      }
    }
    network->MeasureForwardMemory();
  }
  catch (...)
  {
    keepProbePeak();
    throw;
  }
  network->abortRequested = nullptr;
  return network;
}

UNetModel::LoadedNetwork
UNetModel::GetLoadedNetwork(const char * what) const
{
  const std::lock_guard<std::mutex> lock(m_StateMutex);
  if (!m_LoadedNetwork)
  {
    itkExceptionMacro(<< what << " needs a loaded model: call Load() first.");
  }
  return m_LoadedNetwork;
}

UNetModel::LoadedNetwork
UNetModel::GetLoadedNetworkWithAxis(const char * what, unsigned int axis) const
{
  LoadedNetwork network = this->GetLoadedNetwork(what);
  if (axis >= network->geometry.Dimension)
  {
    itkExceptionMacro(<< what << ": axis " << axis << " does not exist in the " << network->geometry.Dimension
                      << "-D network.");
  }
  return network;
}

void
UNetModel::VerifyInputTileSize(const Implementation & network, const char * what, const TileSizeType & inputTileSize)
{
  const UNetNetworkGeometry & geometry = network.geometry;
  if (inputTileSize.size() != geometry.Dimension)
  {
    itkGenericExceptionMacro(<< what << ": a tile of " << inputTileSize.size() << " axes was given to a "
                             << geometry.Dimension << "-D network.");
  }
  // The network must never see an edge it was not probed to take: an optimised network can crash on one.
  for (unsigned int axis = 0; axis < geometry.Dimension; ++axis)
  {
    const SizeValueType edge = inputTileSize[axis];
    if (edge < 2 * geometry.Border[axis] || !geometry.IsValidOutputSize(axis, edge - 2 * geometry.Border[axis]))
    {
      itkGenericExceptionMacro(<< what << ": input tile edge " << edge << " along axis " << axis
                               << " is not valid for the network; valid edges there are "
                               << geometry.MinimumInputSize[axis] << " + k * " << geometry.DownsamplingFactor[axis]
                               << '.');
    }
  }
}

unsigned int
UNetModel::GetNetworkDimension() const
{
  return this->GetLoadedNetwork("GetNetworkDimension")->geometry.Dimension;
}

unsigned int
UNetModel::GetNumberOfInputChannels() const
{
  return this->GetLoadedNetwork("GetNumberOfInputChannels")->geometry.InputChannels;
}

unsigned int
UNetModel::GetNumberOfClasses() const
{
  return this->GetLoadedNetwork("GetNumberOfClasses")->geometry.Classes;
}

UNetModel::SizeValueType
UNetModel::GetBorder(unsigned int axis) const
{
  return this->GetLoadedNetworkWithAxis("GetBorder", axis)->geometry.Border[axis];
}

UNetModel::SizeValueType
UNetModel::GetDownsamplingFactor(unsigned int axis) const
{
  return this->GetLoadedNetworkWithAxis("GetDownsamplingFactor", axis)->geometry.DownsamplingFactor[axis];
}

UNetModel::SizeValueType
UNetModel::GetMinimumInputSize(unsigned int axis) const
{
  return this->GetLoadedNetworkWithAxis("GetMinimumInputSize", axis)->geometry.MinimumInputSize[axis];
}

UNetModel::SizeValueType
UNetModel::GetMinimumOutputSize(unsigned int axis) const
{
  return this->GetLoadedNetworkWithAxis("GetMinimumOutputSize", axis)->geometry.GetMinimumOutputSize(axis);
}

bool
UNetModel::IsValidOutputSize(unsigned int axis, SizeValueType outputSize) const
{
  return this->GetLoadedNetworkWithAxis("IsValidOutputSize", axis)->geometry.IsValidOutputSize(axis, outputSize);
}

UNetModel::SizeValueType
UNetModel::GetValidOutputSizeAtLeast(unsigned int axis, SizeValueType outputSize) const
{
  return this->GetLoadedNetworkWithAxis("GetValidOutputSizeAtLeast", axis)
    ->geometry.GetValidOutputSizeAtLeast(axis, outputSize);
}

UNetModel::SizeValueType
UNetModel::GetValidOutputSizeAtMost(unsigned int axis, SizeValueType outputSize) const
{
  return this->GetLoadedNetworkWithAxis("GetValidOutputSizeAtMost", axis)
    ->geometry.GetValidOutputSizeAtMost(axis, outputSize);
}

double
UNetModel::GetProbePeakBytes() const
{
  const std::lock_guard<std::mutex> lock(m_StateMutex);
  return m_ProbePeakBytes;
}

bool
UNetModel::HasModelCard() const
{
  return this->GetLoadedNetwork("HasModelCard")->card.has_value();
}

UNetModelCard
UNetModel::GetModelCard() const
{
  const LoadedNetwork network = this->GetLoadedNetwork("GetModelCard");
  if (!network->card)
  {
    itkExceptionMacro("The model in \"" << network->settings.FileName << "\" has no model card.");
  }
  return *network->card;
}

std::vector<double>
UNetModel::GetTrainedSpacing() const
{
  const LoadedNetwork network = this->GetLoadedNetwork("GetTrainedSpacing");
  return network->card && network->card->HasPhysicalSpacing() ? network->card->Spacing : std::vector<double>();
}

std::string
UNetModel::GetTrainedSpacingUnit() const
{
  const LoadedNetwork network = this->GetLoadedNetwork("GetTrainedSpacingUnit");
  return network->card && network->card->HasPhysicalSpacing() ? network->card->SpacingUnit : std::string();
}

double
UNetModel::MillimetersPerUnit(const std::string & unit, const char * what)
{
  if (const std::optional<double> millimeters = unet_detail::MillimetersPerSpacingUnit(unit))
  {
    return *millimeters;
  }
  itkGenericExceptionMacro(<< what << " must be \"mm\", \"um\" or \"nm\"; got \"" << unit << "\".");
}

std::string
UNetModel::GetModelCardJSON() const
{
  const LoadedNetwork network = this->GetLoadedNetwork("GetModelCardJSON");
  return network->card ? network->card->ToJSON() : std::string();
}

UNetNetworkGeometry
UNetModel::GetGeometry() const
{
  return this->GetLoadedNetwork("GetGeometry")->geometry;
}

double
UNetModel::GetEstimatedForwardBytes(unsigned int batchSize, const TileSizeType & inputTileSize) const
{
  return this->GetGeometry().EstimateForwardBytes(batchSize, inputTileSize);
}

double
UNetModel::MeasureForwardBytes(unsigned int batchSize, const TileSizeType & inputTileSize) const
{
  const LoadedNetwork network = this->GetLoadedNetwork("MeasureForwardBytes");
  VerifyInputTileSize(*network, "MeasureForwardBytes", inputTileSize);
  const Implementation::ThreadCount threadCount(this->GetNumberOfThreads());
  c10::InferenceMode                inferenceMode;
  const torch::Tensor               input =
    torch::zeros(network->TorchShape(batchSize, network->geometry.InputChannels, inputTileSize));
  try
  {
    return network->MeasureForwardBytes(input);
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
  // The network loaded now serves the whole call, even if another thread loads a new one meanwhile.
  this->PredictProbabilities(
    this->GetLoadedNetwork("PredictProbabilities")->geometry, input, batchSize, inputTileSize, probabilities);
}

void
UNetModel::PredictProbabilities(const UNetNetworkGeometry & expected, const float * input, unsigned int batchSize,
                                const TileSizeType & inputTileSize, float * probabilities) const
{
  const LoadedNetwork network = this->GetLoadedNetwork("PredictProbabilities");
  if (!network->geometry.DescribesTheSameNetworkAs(expected))
  {
    itkExceptionMacro("The model was loaded again, with another network (\""
                      << network->settings.FileName
                      << "\"), while tiles planned for the one before were running; update again.");
  }
  VerifyInputTileSize(*network, "PredictProbabilities", inputTileSize);
  const unsigned int threads = this->GetNumberOfThreadsInUse();
  // The tiles of a batch are independent, and on the CPU several smaller forward passes side by side, each on its
  // share of the threads, run a batch faster than one pass spreading each layer over all the threads, whose
  // synchronisation and serial parts leave cores idle (docs/benchmarks.md, "Batches side by side in the filter"); the
  // outputs are the same bit for bit, since a tile's scores do not depend on its batch. GPUs take the batch whole.
  const unsigned int passes = network->device.is_cpu() ? std::max(1u, std::min(threads, batchSize)) : 1u;
  SizeValueType      inputTileValues = network->geometry.InputChannels;
  SizeValueType      outputTileValues = network->geometry.Classes;
  for (unsigned int axis = 0; axis < network->geometry.Dimension; ++axis)
  {
    inputTileValues *= inputTileSize[axis];
    outputTileValues *= inputTileSize[axis] - 2 * network->geometry.Border[axis];
  }
  std::vector<std::function<void()>> runs;
  unsigned int                       firstTile = 0;
  for (unsigned int pass = 0; pass < passes; ++pass)
  {
    const unsigned int tiles = batchSize / passes + (pass < batchSize % passes ? 1 : 0);
    const unsigned int passThreads = threads / passes + (pass < threads % passes ? 1 : 0);
    runs.emplace_back([=, &network]() {
      PredictProbabilitiesInOnePass(*network,
                                    input + firstTile * inputTileValues,
                                    tiles,
                                    inputTileSize,
                                    probabilities + firstTile * outputTileValues,
                                    passThreads);
    });
    firstTile += tiles;
  }
  RunSideBySide(runs);
}

void
UNetModel::PredictProbabilitiesInOnePass(const Implementation & network, const float * input, unsigned int batchSize,
                                         const TileSizeType & inputTileSize, float * probabilities,
                                         unsigned int numberOfThreads)
{
  std::vector<SizeValueType> outputTileSize(network.geometry.Dimension);
  for (unsigned int axis = 0; axis < network.geometry.Dimension; ++axis)
  {
    outputTileSize[axis] = inputTileSize[axis] - 2 * network.geometry.Border[axis];
  }

  // LibTorch's OpenMP thread count belongs to the calling thread.
  const Implementation::ThreadCount threadCount(numberOfThreads);
  c10::InferenceMode                inferenceMode;
  const std::vector<int64_t> inputShape = network.TorchShape(batchSize, network.geometry.InputChannels, inputTileSize);
  const std::vector<int64_t> expectedShape = network.TorchShape(batchSize, network.outputChannels, outputTileSize);
  torch::Tensor              scores;
  try
  {
    scores = network.Forward(torch::from_blob(const_cast<float *>(input), inputShape, torch::kFloat32));
  }
  catch (const std::exception & error)
  {
    ThrowForwardFailure(error, inputShape);
  }
  if (scores.sizes() != c10::IntArrayRef(expectedShape))
  {
    itkGenericExceptionMacro("The network's output has shape " << ShapeToString(scores.sizes())
                                                               << " for an input of shape " << ShapeToString(inputShape)
                                                               << "; expected " << ShapeToString(expectedShape) << '.');
  }

  const torch::Tensor scoresOnCpu = scores.to(torch::kCPU, torch::kFloat32).contiguous();
  SizeValueType       tileVoxels = 1;
  for (const SizeValueType edge : outputTileSize)
  {
    tileVoxels *= edge;
  }
  network.ScoresToProbabilities(scoresOnCpu.data_ptr<float>(), batchSize, tileVoxels, probabilities);
}

void
UNetModel::PrintSelf(std::ostream & os, Indent indent) const
{
  Superclass::PrintSelf(os, indent);
  const Settings settings = this->CopySettings();
  os << indent << "FileName: " << settings.FileName << std::endl;
  os << indent << "Device: " << settings.Device << std::endl;
  os << indent << "Precision: " << settings.Precision << std::endl;
  os << indent << "ImageDimension: " << settings.ImageDimension << std::endl;
  os << indent << "NumberOfThreads: " << settings.NumberOfThreads << std::endl;
  os << indent << "Freeze: " << (settings.Freeze ? "On" : "Off") << std::endl;
  os << indent << "MaximumProbeSize: " << settings.MaximumProbeSize << std::endl;
  os << indent << "ProbeMemoryBudget: " << settings.ProbeMemoryBudget << " MB" << std::endl;
  const bool loaded = this->IsLoaded();
  os << indent << "Loaded: " << (loaded ? "yes" : "no") << std::endl;
  if (loaded)
  {
    const LoadedNetwork         network = this->GetLoadedNetwork("PrintSelf");
    const UNetNetworkGeometry & geometry = network->geometry;
    os << indent << "NetworkDimension: " << geometry.Dimension << std::endl;
    os << indent << "NumberOfInputChannels: " << geometry.InputChannels << std::endl;
    os << indent << "NumberOfClasses: " << geometry.Classes << std::endl;
    // Per axis, x first.
    os << indent << "Border: " << EdgesToString(geometry.Border) << std::endl;
    os << indent << "DownsamplingFactor: " << EdgesToString(geometry.DownsamplingFactor) << std::endl;
    os << indent << "MinimumInputSize: " << EdgesToString(geometry.MinimumInputSize) << std::endl;
    os << indent << "Frozen: " << (network->frozen ? "yes" : "no") << std::endl;
    os << indent << "ModelCard: " << (network->card ? "yes" : "no") << std::endl;
  }
}

} // end namespace itk
