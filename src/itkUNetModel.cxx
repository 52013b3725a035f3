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
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <mutex>
#include <sstream>

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

  unsigned int  dimension{ 0 };
  unsigned int  inputChannels{ 0 };
  int64_t       outputChannels{ 0 };
  int64_t       firstConvolutionOutputChannels{ 0 };
  SizeValueType border{ 0 };
  SizeValueType granularity{ 1 };
  SizeValueType minimumInputSize{ 0 };

  static void
  SetThreads(unsigned int numberOfThreads)
  {
    const int wanted =
      static_cast<int>(numberOfThreads > 0 ? numberOfThreads : MultiThreaderBase::GetGlobalDefaultNumberOfThreads());
    if (at::get_num_threads() != wanted)
    {
      at::set_num_threads(wanted);
    }
  }

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
         impl.loadedRequestedDimension == m_ImageDimension;
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

  try
  {
    impl.device = torch::Device(m_Device);
  }
  catch (const std::exception & error)
  {
    itkExceptionMacro("\"" << m_Device << "\" is not a device LibTorch knows: " << FirstLine(error.what()));
  }
  if (impl.device.is_cuda() && !torch::cuda::is_available())
  {
    itkExceptionMacro("Device \"" << m_Device
                                  << "\" was asked for, but CUDA is not available to LibTorch here (no CUDA build or "
                                     "no visible GPU). Use device \"cpu\".");
  }
  if (!impl.device.is_cpu() && !impl.device.is_cuda())
  {
    itkExceptionMacro("Device \"" << m_Device << "\" is not supported; use \"cpu\" or \"cuda[:N]\".");
  }

  try
  {
    impl.module = torch::jit::load(m_FileName, impl.device);
  }
  catch (const std::exception & error)
  {
    itkExceptionMacro("Cannot load a TorchScript model from \"" << m_FileName << "\": " << FirstLine(error.what()));
  }
  impl.module.eval();

  // LibTorch 1.13 takes a tensor's sizes, strides and offset from the file without comparing them with its storage:
  // in a corrupt file they would make the network read past its weights.
  for (const auto & attribute : impl.module.named_attributes())
  {
    if (attribute.value.isTensor() && !TensorFitsItsStorage(attribute.value.toTensor()))
    {
      itkExceptionMacro("The model file \"" << m_FileName << "\" is corrupt: tensor " << attribute.name << " of shape "
                                            << ShapeToString(attribute.value.toTensor().sizes())
                                            << " reaches past the data stored for it.");
    }
  }

  // The first weight of rank 3 or more is the first convolution's: [out, in, kernel...].
  std::vector<int64_t> channelCandidates;
  for (const torch::Tensor & parameter : impl.module.parameters())
  {
    if (parameter.dim() >= 3)
    {
      const auto networkDimension = static_cast<unsigned int>(parameter.dim() - 2);
      if (m_ImageDimension != 0 && networkDimension != m_ImageDimension)
      {
        itkExceptionMacro("The network in \""
                          << m_FileName << "\" is " << networkDimension << "-D (its first convolution weight has shape "
                          << ShapeToString(parameter.sizes()) << "), but the images are " << m_ImageDimension << "-D.");
      }
      impl.dimension = networkDimension;
      channelCandidates.push_back(parameter.size(1));
      impl.firstConvolutionOutputChannels = parameter.size(0);
      break;
    }
  }
  if (impl.dimension == 0)
  {
    impl.dimension = m_ImageDimension;
  }
  if (impl.dimension != 2 && impl.dimension != 3)
  {
    itkExceptionMacro("Cannot tell which image dimension the network in \""
                      << m_FileName << "\" takes (found " << impl.dimension
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

  Implementation::SetThreads(m_NumberOfThreads);
  c10::InferenceMode inferenceMode;

  // Find an edge the network runs on, doubling from 1.
  ProbeResult   running;
  SizeValueType runningEdge = 0;
  std::string   lastError; // for the likeliest channel count, the first candidate
  for (SizeValueType edge = 1; edge <= m_MaximumProbeSize && !running.ran; edge *= 2)
  {
    for (const int64_t channels : channelCandidates)
    {
      running = impl.Probe(channels, edge);
      if (running.ran)
      {
        impl.inputChannels = static_cast<unsigned int>(channels);
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
    itkExceptionMacro("The network in \"" << m_FileName << "\" ran on no " << impl.dimension
                                          << "-D input of 1 to 16 channels and edges 1 to " << m_MaximumProbeSize
                                          << "; with " << channelCandidates.front() << " channel(s) and edge "
                                          << m_MaximumProbeSize << ": " << lastError);
  }
  impl.outputChannels = running.outputChannels;

  // Step up one voxel at a time until two edges with the smallest loss, edge - output edge, are found: those are
  // consecutive valid edges. Larger losses belong to edges whose pooling grid is misaligned.
  const SizeValueType        scanLimit = runningEdge + 512;
  std::vector<SizeValueType> alignedEdges;
  int64_t                    smallestLoss = std::numeric_limits<int64_t>::max();
  for (SizeValueType edge = runningEdge; edge <= scanLimit && alignedEdges.size() < 2; ++edge)
  {
    const ProbeResult probe = edge == runningEdge ? running : impl.Probe(impl.inputChannels, edge);
    if (!probe.ran)
    {
      continue;
    }
    if (probe.outputChannels != impl.outputChannels)
    {
      itkExceptionMacro("The network's number of output channels changes with the input size ("
                        << impl.outputChannels << " and " << probe.outputChannels << ").");
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
    itkExceptionMacro("Found no two valid input edges between " << runningEdge << " and " << scanLimit
                                                                << " for the network in \"" << m_FileName << "\".");
  }
  if (smallestLoss < 0 || smallestLoss % 2 != 0)
  {
    itkExceptionMacro("The network in \"" << m_FileName << "\" changes a tile's edge by " << -smallestLoss
                                          << "; only networks that lose the same border on both sides (or none) "
                                             "are supported.");
  }
  impl.border = static_cast<SizeValueType>(smallestLoss / 2);
  impl.granularity = alignedEdges[1] - alignedEdges[0];

  // Walk down to the smallest edge that still gives an output, then confirm it runs.
  SizeValueType edge = alignedEdges[0];
  while (edge > impl.granularity && edge - impl.granularity > 2 * impl.border)
  {
    edge -= impl.granularity;
  }
  for (; edge < alignedEdges[0]; edge += impl.granularity)
  {
    const ProbeResult probe = impl.Probe(impl.inputChannels, edge);
    if (probe.ran && probe.outputEdge == static_cast<int64_t>(edge - 2 * impl.border))
    {
      break;
    }
  }
  impl.minimumInputSize = edge;

  impl.loaded = true;
  impl.loadedFileName = m_FileName;
  impl.loadedDevice = m_Device;
  impl.loadedRequestedDimension = m_ImageDimension;
  if (m_ImageDimension == 0)
  {
    m_ImageDimension = impl.dimension;
    impl.loadedRequestedDimension = impl.dimension;
  }
}

void
UNetModel::VerifyLoaded(const char * what) const
{
  if (!this->IsLoaded())
  {
    itkExceptionMacro(<< what << " needs a loaded model: call Load() first.");
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
UNetModel::GetEstimatedBytesPerInputVoxel() const
{
  this->VerifyLoaded("GetEstimatedBytesPerInputVoxel");
  const Implementation & impl = *m_Implementation;
  // At full resolution a U-Net holds its input, a few feature maps of the first convolution's width (the one in
  // flight, the skip connection, the decoder's concatenation) and the class scores.
  const auto width = static_cast<double>(std::max<int64_t>(impl.firstConvolutionOutputChannels, 1));
  return sizeof(float) * (impl.inputChannels + 6.0 * width + 2.0 * this->GetNumberOfClasses());
}

void
UNetModel::PredictProbabilities(const float * input, unsigned int batchSize, const TileSizeType & inputTileSize,
                                float * probabilities) const
{
  this->VerifyLoaded("PredictProbabilities");
  Implementation & impl = *m_Implementation;
  if (inputTileSize.size() != impl.dimension)
  {
    itkExceptionMacro("A tile of " << inputTileSize.size() << " axes was given to a " << impl.dimension
                                   << "-D network.");
  }
  std::vector<SizeValueType> outputTileSize(impl.dimension);
  for (unsigned int axis = 0; axis < impl.dimension; ++axis)
  {
    if (inputTileSize[axis] < 2 * impl.border || !this->IsValidOutputSize(inputTileSize[axis] - 2 * impl.border))
    {
      itkExceptionMacro("Input tile edge " << inputTileSize[axis] << " is not valid for the network; valid edges are "
                                           << impl.minimumInputSize << " + k * " << impl.granularity << '.');
    }
    outputTileSize[axis] = inputTileSize[axis] - 2 * impl.border;
  }

  Implementation::SetThreads(m_NumberOfThreads);
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
    itkExceptionMacro("The network failed on a batch of shape " << ShapeToString(inputShape) << ": "
                                                                << FirstLine(error.what()));
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
  os << indent << "MaximumProbeSize: " << m_MaximumProbeSize << std::endl;
  os << indent << "Loaded: " << (this->IsLoaded() ? "yes" : "no") << std::endl;
  if (this->IsLoaded())
  {
    os << indent << "NumberOfInputChannels: " << this->GetNumberOfInputChannels() << std::endl;
    os << indent << "NumberOfClasses: " << this->GetNumberOfClasses() << std::endl;
    os << indent << "Border: " << this->GetBorder() << std::endl;
    os << indent << "SizeGranularity: " << this->GetSizeGranularity() << std::endl;
    os << indent << "MinimumInputSize: " << this->GetMinimumInputSize() << std::endl;
  }
}

} // end namespace itk
