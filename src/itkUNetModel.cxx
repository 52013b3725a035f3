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
  bool                 ran{ false };
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
  torch::jit::Module module{};
  torch::Device      device{ torch::kCPU };
  bool               loaded{ false };
  std::string        loadedFileName{};
  std::string        loadedDevice{};
  unsigned int       loadedRequestedDimension{ 0 };
  bool               loadedFreeze{ false };
  bool               frozen{ false };

  UNetNetworkGeometry geometry{};
  int64_t             outputChannels{ 0 }; // 1 for a network read as two classes through a sigmoid

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
    for (auto axis = static_cast<int>(geometry.Dimension) - 1; axis >= 0; --axis)
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

  /** Runs the network once on a zero input of `edges` (x first); a failure is a result, not an exception, but an
   * output that is no [batch, classes, spatial axes...] tensor is an exception. */
  ProbeResult
  Probe(int64_t channels, const std::vector<SizeValueType> & edges)
  {
    ProbeResult   result;
    torch::Tensor output;
    try
    {
      output = Forward(torch::zeros(TorchShape(1, channels, edges)));
    }
    catch (const std::exception & error)
    {
      result.error = FirstLine(error.what());
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
      itkGenericExceptionMacro("Cannot tell which image geometry.Dimension the network in \""
                               << fileName << "\" takes (found " << geometry.Dimension
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
    std::string lastError; // for the likeliest channel count, the first candidate
    for (SizeValueType edge = 1; edge <= maximumProbeSize; edge *= 2)
    {
      for (const int64_t channels : channelCandidates)
      {
        const ProbeResult probe = ProbeCube(channels, edge);
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
    }
    itkGenericExceptionMacro("The network in \"" << fileName << "\" ran on no " << geometry.Dimension
                                                 << "-D input of 1 to 16 channels and edges 1 to " << maximumProbeSize
                                                 << "; with " << channelCandidates.front() << " channel(s) and edge "
                                                 << maximumProbeSize << ": " << lastError);
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
                               << base[axis] << " and " << base[axis] + geometry.DownsamplingFactor[axis] << " lose the fewest voxels ("
                               << smallestLoss << ") of those tried up to " << base[axis] + geometry.DownsamplingFactor[axis]
                               << ", but edge " << edges[axis] << (probe.ran ? " loses more" : " fails") << '.');
    }
  }

  /** The smallest valid edge along `axis`: down from `base` by the geometry.DownsamplingFactor while an output remains, confirmed by
   * running it (the other axes held at `base`). */
  SizeValueType
  FindMinimumEdge(unsigned int axis, const std::vector<SizeValueType> & base)
  {
    SizeValueType edge = base[axis];
    while (edge > geometry.DownsamplingFactor[axis] && edge - geometry.DownsamplingFactor[axis] > 2 * geometry.Border[axis])
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

  /** Whether the network maps `edges` to `edges - 2 * geometry.Border` on every axis; throws, naming `what` and the sizes
   * tried, when not. */
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
      itkGenericExceptionMacro("The network in \""
                               << fileName << "\" is inconsistent between " << what << ": probed per axis, geometry.Border "
                               << EdgesToString(geometry.Border) << ", downsampling geometry.DownsamplingFactor " << EdgesToString(geometry.DownsamplingFactor)
                               << ", smallest input " << EdgesToString(geometry.MinimumInputSize) << "; but an input of "
                               << EdgesToString(edges) << ' ' << got.str() << '.');
    }
  }

  /** Finds the input channels, the classes and, per axis, the geometry.Border, the downsampling geometry.DownsamplingFactor and the smallest
   * valid input edge by running the network on zero inputs. */
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
                                                     << "; only networks that lose the same geometry.Border on both sides "
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
    const auto                 probeEdge = static_cast<SizeValueType>(std::pow(double{ 1 << 18 }, 1.0 / geometry.Dimension));
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
        itkGenericExceptionMacro("The network fails on an input of " << EdgesToString(probe)
                                                                     << " voxels, valid by its probed geometry: "
                                                                     << FirstLine(error.what()));
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
  const std::vector<int64_t>        channelCandidates = impl.ReadFirstConvolution(m_FileName, m_ImageDimension);
  const Implementation::ThreadCount threadCount(m_NumberOfThreads);
  c10::InferenceMode                inferenceMode;
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
  return m_Implementation->geometry.Dimension;
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
UNetModel::VerifyAxis(const char * what, unsigned int axis) const
{
  this->VerifyLoaded(what);
  if (axis >= m_Implementation->geometry.Dimension)
  {
    itkExceptionMacro(<< what << ": axis " << axis << " does not exist in the " << m_Implementation->geometry.Dimension
                      << "-D network.");
  }
}

void
UNetModel::VerifyInputTileSize(const char * what, const TileSizeType & inputTileSize) const
{
  this->VerifyLoaded(what);
  const Implementation & impl = *m_Implementation;
  if (inputTileSize.size() != impl.geometry.Dimension)
  {
    itkExceptionMacro("A tile of " << inputTileSize.size() << " axes was given to a " << impl.geometry.Dimension
                                   << "-D network.");
  }
  // The network must never see an edge it was not probed to take: an optimised network can crash on one.
  for (unsigned int axis = 0; axis < impl.geometry.Dimension; ++axis)
  {
    const SizeValueType edge = inputTileSize[axis];
    if (edge < 2 * impl.geometry.Border[axis] || !this->IsValidOutputSize(axis, edge - 2 * impl.geometry.Border[axis]))
    {
      itkExceptionMacro("Input tile edge " << edge << " along axis " << axis
                                           << " is not valid for the network; valid edges there are "
                                           << impl.geometry.MinimumInputSize[axis] << " + k * " << impl.geometry.DownsamplingFactor[axis] << '.');
    }
  }
}

unsigned int
UNetModel::GetNumberOfInputChannels() const
{
  this->VerifyLoaded("GetNumberOfInputChannels");
  return m_Implementation->geometry.InputChannels;
}

unsigned int
UNetModel::GetNumberOfClasses() const
{
  this->VerifyLoaded("GetNumberOfClasses");
  return m_Implementation->geometry.Classes;
}

UNetModel::SizeValueType
UNetModel::GetBorder(unsigned int axis) const
{
  this->VerifyAxis("GetBorder", axis);
  return m_Implementation->geometry.Border[axis];
}

UNetModel::SizeValueType
UNetModel::GetDownsamplingFactor(unsigned int axis) const
{
  this->VerifyAxis("GetDownsamplingFactor", axis);
  return m_Implementation->geometry.DownsamplingFactor[axis];
}

UNetModel::SizeValueType
UNetModel::GetMinimumInputSize(unsigned int axis) const
{
  this->VerifyAxis("GetMinimumInputSize", axis);
  return m_Implementation->geometry.MinimumInputSize[axis];
}

UNetModel::SizeValueType
UNetModel::GetMinimumOutputSize(unsigned int axis) const
{
  this->VerifyAxis("GetMinimumOutputSize", axis);
  return m_Implementation->geometry.GetMinimumOutputSize(axis);
}

bool
UNetModel::IsValidOutputSize(unsigned int axis, SizeValueType outputSize) const
{
  this->VerifyAxis("IsValidOutputSize", axis);
  return m_Implementation->geometry.IsValidOutputSize(axis, outputSize);
}

UNetModel::SizeValueType
UNetModel::GetValidOutputSizeAtLeast(unsigned int axis, SizeValueType outputSize) const
{
  this->VerifyAxis("GetValidOutputSizeAtLeast", axis);
  return m_Implementation->geometry.GetValidOutputSizeAtLeast(axis, outputSize);
}

UNetModel::SizeValueType
UNetModel::GetValidOutputSizeAtMost(unsigned int axis, SizeValueType outputSize) const
{
  this->VerifyAxis("GetValidOutputSizeAtMost", axis);
  return m_Implementation->geometry.GetValidOutputSizeAtMost(axis, outputSize);
}

const UNetNetworkGeometry &
UNetModel::GetGeometry() const
{
  this->VerifyLoaded("GetGeometry");
  return m_Implementation->geometry;
}

double
UNetModel::GetEstimatedForwardBytes(unsigned int batchSize, const TileSizeType & inputTileSize) const
{
  return this->GetGeometry().EstimateForwardBytes(batchSize, inputTileSize);
}

double
UNetModel::MeasureForwardBytes(unsigned int batchSize, const TileSizeType & inputTileSize) const
{
  this->VerifyInputTileSize("MeasureForwardBytes", inputTileSize);
  Implementation &                  impl = *m_Implementation;
  const Implementation::ThreadCount threadCount(m_NumberOfThreads);
  c10::InferenceMode                inferenceMode;
  const torch::Tensor               input = torch::zeros(impl.TorchShape(batchSize, impl.geometry.InputChannels, inputTileSize));
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

  SizeValueType inputTileValues = impl.geometry.InputChannels;
  SizeValueType outputTileValues = this->GetNumberOfClasses();
  for (unsigned int axis = 0; axis < impl.geometry.Dimension; ++axis)
  {
    inputTileValues *= inputTileSize[axis];
    outputTileValues *= inputTileSize[axis] - 2 * impl.geometry.Border[axis];
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
UNetModel::PredictProbabilitiesInOnePass(const float * input, unsigned int batchSize,
                                         const TileSizeType & inputTileSize, float * probabilities,
                                         unsigned int numberOfThreads) const
{
  Implementation &           impl = *m_Implementation;
  std::vector<SizeValueType> outputTileSize(impl.geometry.Dimension);
  for (unsigned int axis = 0; axis < impl.geometry.Dimension; ++axis)
  {
    outputTileSize[axis] = inputTileSize[axis] - 2 * impl.geometry.Border[axis];
  }

  // LibTorch's OpenMP thread count belongs to the calling thread.
  const Implementation::ThreadCount threadCount(numberOfThreads);
  c10::InferenceMode                inferenceMode;
  const std::vector<int64_t>        inputShape = impl.TorchShape(batchSize, impl.geometry.InputChannels, inputTileSize);
  const std::vector<int64_t>        expectedShape = impl.TorchShape(batchSize, impl.outputChannels, outputTileSize);
  torch::Tensor                     scores;
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
    // Per axis, x first.
    os << indent << "Border: " << EdgesToString(m_Implementation->geometry.Border) << std::endl;
    os << indent << "DownsamplingFactor: " << EdgesToString(m_Implementation->geometry.DownsamplingFactor) << std::endl;
    os << indent << "MinimumInputSize: " << EdgesToString(m_Implementation->geometry.MinimumInputSize) << std::endl;
    os << indent << "Frozen: " << (m_Implementation->frozen ? "yes" : "no") << std::endl;
  }
}

} // end namespace itk
