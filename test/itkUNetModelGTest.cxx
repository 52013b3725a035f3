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

#include "itkOutputWindow.h"

#include "UNetTestHelpers.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <random>
#include <sstream>

namespace
{

/** Per axis (x, y, z): the border, the downsampling factor and the smallest input edge. */
using PerAxis = std::array<itk::SizeValueType, 3>;

struct ExpectedGeometry
{
  const char * name;
  unsigned int dimension;
  unsigned int channels;
  unsigned int classes;
  PerAxis      border;
  PerAxis      factor;
  PerAxis      minimumInputSize;
};

void
PrintTo(const ExpectedGeometry & geometry, std::ostream * os)
{
  *os << geometry.name;
}

class UNetModelGeometry : public testing::TestWithParam<ExpectedGeometry>
{};

using UNetTest::LoadModel;

} // namespace

// The geometry of each test model, worked out by hand from its layers (see make_test_models.py).
TEST_P(UNetModelGeometry, ProbingFindsTheGeometry)
{
  const ExpectedGeometry & expected = GetParam();
  const auto               model = LoadModel(expected.name, expected.dimension);
  EXPECT_EQ(model->GetNumberOfInputChannels(), expected.channels);
  EXPECT_EQ(model->GetNumberOfClasses(), expected.classes);
  for (unsigned int axis = 0; axis < expected.dimension; ++axis)
  {
    SCOPED_TRACE("axis " + std::to_string(axis));
    EXPECT_EQ(model->GetBorder(axis), expected.border[axis]);
    EXPECT_EQ(model->GetDownsamplingFactor(axis), expected.factor[axis]);
    EXPECT_EQ(model->GetMinimumInputSize(axis), expected.minimumInputSize[axis]);
    EXPECT_EQ(model->GetMinimumOutputSize(axis), expected.minimumInputSize[axis] - 2 * expected.border[axis]);
  }
  EXPECT_THROW(model->GetBorder(expected.dimension), itk::ExceptionObject);
}

INSTANTIATE_TEST_SUITE_P(
  Models, UNetModelGeometry,
  testing::Values(
    // No pooling: factor 1.
    ExpectedGeometry{ "mean2d", 2, 1, 2, { 1, 1 }, { 1, 1 }, { 3, 3 } },
    ExpectedGeometry{ "mean3d", 3, 1, 2, { 1, 1, 1 }, { 1, 1, 1 }, { 3, 3, 3 } },
    ExpectedGeometry{ "sum2d", 2, 1, 2, { 1, 1 }, { 1, 1 }, { 3, 3 } },
    ExpectedGeometry{ "shift2d", 2, 1, 2, { 3, 3 }, { 1, 1 }, { 7, 7 } },
    ExpectedGeometry{ "classifier2d", 2, 3, 3, { 0, 0 }, { 1, 1 }, { 1, 1 } },
    // Depth 2, valid: out = in - 40, pooled edges even: in = 44 + 4k.
    ExpectedGeometry{ "unet2d_valid", 2, 1, 2, { 20, 20 }, { 4, 4 }, { 44, 44 } },
    // Depth 3, valid: out = in - 88, in = 92 + 8k (out = 4 + 8k).
    ExpectedGeometry{ "unet2d_valid_depth3", 2, 1, 2, { 44, 44 }, { 8, 8 }, { 92, 92 } },
    // Depth 2, same-padded: in = out = 4k.
    ExpectedGeometry{ "unet2d_same", 2, 1, 3, { 0, 0 }, { 4, 4 }, { 4, 4 } },
    // Depth 1, valid, 3-D: out = in - 16, in = 18 + 2k.
    ExpectedGeometry{ "unet3d_valid", 3, 1, 2, { 8, 8, 8 }, { 2, 2, 2 }, { 18, 18, 18 } },
    ExpectedGeometry{ "unet3d_same", 3, 1, 2, { 0, 0, 0 }, { 2, 2, 2 }, { 2, 2, 2 } },
    // Pooled and convolved in-plane at two of its three levels (make_test_models.py's AnisotropicUNet).
    ExpectedGeometry{ "unet3d_anisotropic", 3, 1, 2, { 44, 44, 8 }, { 8, 8, 2 }, { 92, 92, 18 } },
    ExpectedGeometry{ "unet2d_rgb", 2, 3, 2, { 8, 8 }, { 2, 2 }, { 18, 18 } },
    // The paper's geometry: 572 -> 388.
    ExpectedGeometry{ "unet2d_paper", 2, 1, 2, { 92, 92 }, { 16, 16 }, { 188, 188 } }),
  [](const testing::TestParamInfo<ExpectedGeometry> & info) { return std::string(info.param.name); });

TEST(UNetModel, PaperTileSizes)
{
  const auto model = LoadModel("unet2d_paper", 2);
  for (unsigned int axis = 0; axis < 2; ++axis)
  {
    EXPECT_TRUE(model->IsValidOutputSize(axis, 388));
    EXPECT_FALSE(model->IsValidOutputSize(axis, 389));
    EXPECT_EQ(model->GetValidOutputSizeAtLeast(axis, 389), 404u);
    EXPECT_EQ(model->GetValidOutputSizeAtMost(axis, 403), 388u);
    EXPECT_EQ(model->GetValidOutputSizeAtMost(axis, 3), 0u);
    EXPECT_EQ(model->GetValidOutputSizeAtLeast(axis, 1), 4u);
  }
}

TEST(UNetModel, DimensionFromTheFirstConvolution)
{
  const auto model = LoadModel("unet3d_valid", 0);
  EXPECT_EQ(model->GetNetworkDimension(), 3u);
  EXPECT_EQ(model->GetImageDimension(), 0u); // the user's setting stays
  EXPECT_TRUE(model->IsLoaded());
}

TEST(UNetModel, PredictRejectsInvalidTileEdges)
{
  const auto         model = LoadModel("unet2d_valid", 2);
  std::vector<float> input(45 * 44, 0.0f);
  std::vector<float> output(2 * 5 * 4, 0.0f);
  EXPECT_THROW(model->PredictProbabilities(input.data(), 1, { 45, 44 }, output.data()), itk::ExceptionObject);
}

TEST(UNetModel, PredictGivesProbabilities)
{
  const auto         model = LoadModel("classifier2d", 2);
  std::vector<float> input{ 1.0f, 0.0f, 0.0f, 2.0f, 3.0f, -1.0f }; // 3 channels x 2 voxels
  std::vector<float> output(6);
  model->PredictProbabilities(input.data(), 1, { 2, 1 }, output.data());
  for (unsigned int voxel = 0; voxel < 2; ++voxel)
  {
    const double c0 = input[voxel], c1 = input[2 + voxel], c2 = input[4 + voxel];
    const double scores[] = { c0, 2.0 * c1, 0.5 * c0 + 0.5 * c1 + c2 };
    double       total = 0.0;
    for (const double score : scores)
    {
      total += std::exp(score);
    }
    for (unsigned int k = 0; k < 3; ++k)
    {
      EXPECT_NEAR(output[k * 2 + voxel], std::exp(scores[k]) / total, 1e-6);
    }
  }
}

TEST(UNetModel, PredictGivesTwoClassProbabilities)
{
  // Two classes take a shortcut (a sigmoid of the score difference); it must still be the softmax.
  const auto               model = LoadModel("two_class2d", 2);
  const std::vector<float> input{ -30.0f, -1.5f, -0.25f, 0.0f, 0.75f, 3.0f, 40.0f };
  std::vector<float>       output(2 * input.size());
  model->PredictProbabilities(input.data(), 1, { input.size(), 1 }, output.data());
  for (size_t voxel = 0; voxel < input.size(); ++voxel)
  {
    const double scores[] = { input[voxel], -2.0 * input[voxel] };
    const double total = std::exp(scores[0]) + std::exp(scores[1]);
    for (unsigned int k = 0; k < 2; ++k)
    {
      EXPECT_NEAR(output[k * input.size() + voxel], std::exp(scores[k]) / total, 1e-7) << "voxel " << voxel;
    }
  }
}

TEST(UNetModel, BatchSplitBetweenThreadsEqualsOnePass)
{
  // On the CPU a batch runs as up to NumberOfThreads forward passes side by side (here 2 and 3 passes of an uneven
  // split, and one pass with a thread per tile); every tile's probabilities must be those of the single pass.
  const auto                         model = LoadModel("unet2d_valid", 2);
  const itk::SizeValueType           edge = model->GetValidOutputSizeAtLeast(0, 12) + 2 * model->GetBorder(0);
  const itk::SizeValueType           outputEdge = edge - 2 * model->GetBorder(0);
  const itk::UNetModel::TileSizeType tile{ edge, edge };
  const unsigned int                 batch = 5;
  std::vector<float>                 input(batch * edge * edge);
  std::mt19937                       random(7);
  std::normal_distribution<float>    gaussian;
  for (float & value : input)
  {
    value = gaussian(random);
  }
  const auto predict = [&](unsigned int threads) {
    model->SetNumberOfThreads(threads);
    std::vector<float> output(batch * 2 * outputEdge * outputEdge, -1.0f);
    model->PredictProbabilities(input.data(), batch, tile, output.data());
    return output;
  };
  const std::vector<float> onePass = predict(1);
  EXPECT_TRUE(std::all_of(onePass.begin(), onePass.end(), [](float p) { return p >= 0.0f && p <= 1.0f; }));
  for (const unsigned int threads : { 2u, 3u, 8u })
  {
    EXPECT_EQ(predict(threads), onePass) << threads << " threads";
  }
}

namespace
{
void
ExpectLoadFails(const std::string & fileName, const std::string & device, unsigned int dimension, const char * message)
{
  auto model = itk::UNetModel::New();
  model->SetFileName(fileName);
  model->SetDevice(device);
  model->SetImageDimension(dimension);
  try
  {
    model->Load();
    ADD_FAILURE() << "Load() did not throw for " << fileName;
  }
  catch (const itk::ExceptionObject & error)
  {
    EXPECT_NE(std::string(error.GetDescription()).find(message), std::string::npos) << error.GetDescription();
  }
  EXPECT_FALSE(model->IsLoaded());
}
} // namespace

TEST(UNetModel, BadModelsThrow)
{
  ExpectLoadFails("", "cpu", 2, "No model file name");
  ExpectLoadFails(UNetTest::ModelPath("does_not_exist"), "cpu", 2, "does not exist");
  ExpectLoadFails(UNetTest::ModelPath("corrupt"), "cpu", 2, "Cannot load a TorchScript model");
  ExpectLoadFails(UNetTest::ModelPath("mean3d"), "cpu", 2, "is 3-D");
  ExpectLoadFails(UNetTest::ModelPath("tuple_output"), "cpu", 2, "not a tensor");
  ExpectLoadFails(UNetTest::ModelPath("flat_output"), "cpu", 2, "expected [batch, classes");
  ExpectLoadFails(UNetTest::ModelPath("mean2d"), "tpu", 2, "is not a device");
  ExpectLoadFails(UNetTest::ModelPath("irregular_edges2d"), "cpu", 2, "has no regular valid input edges along axis 0");
  ExpectLoadFails(UNetTest::ModelPath("coupled_axes2d"), "cpu", 2, "is inconsistent between axes");
  ExpectLoadFails(UNetTest::ModelPath("no_classes2d"), "cpu", 2, "has no output channel: it scores no class");
}

TEST(UNetModel, FailingNetworksGiveUpQuicklyWithinTheProbingBudget)
{
  // 3-D networks at default settings: one that returns a tuple fails at its first probe; one that raises on every
  // input grows its probes only while they stay within the budget (1024 MB), then gives up.
  const std::pair<const char *, const char *> cases[] = {
    { "tuple_output3d", "The network's output is no tensor: the network returns a Tuple" },
    { "always_raising3d", "larger ones would take more than the probing budget of 1024 MB" }
  };
  for (const auto & [name, message] : cases)
  {
    SCOPED_TRACE(name);
    auto model = itk::UNetModel::New();
    model->SetFileName(UNetTest::ModelPath(name));
    model->SetImageDimension(3);
    const auto start = std::chrono::steady_clock::now();
    try
    {
      model->Load();
      ADD_FAILURE() << "loaded";
    }
    catch (const itk::ExceptionObject & error)
    {
      EXPECT_NE(std::string(error.GetDescription()).find(message), std::string::npos) << error.GetDescription();
    }
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 60.0);
    EXPECT_GT(model->GetProbePeakBytes(), 0.0);
    EXPECT_LE(model->GetProbePeakBytes(), 1024.0 * 1024.0 * 1024.0);
  }
}

TEST(UNetModel, UnavailableCudaThrows)
{
  auto model = itk::UNetModel::New();
  model->SetFileName(UNetTest::ModelPath("mean2d"));
  model->SetDevice("cuda");
  bool cudaRan = false;
  try
  {
    model->Load();
    cudaRan = true;
  }
  catch (const itk::ExceptionObject & error)
  {
    EXPECT_NE(std::string(error.GetDescription()).find("CUDA is not available"), std::string::npos)
      << error.GetDescription();
  }
  if (cudaRan)
  {
    // On a machine with a GPU the same model runs there and gives the CPU's geometry.
    EXPECT_EQ(model->GetBorder(0), 1u);
  }
}

TEST(UNetModel, LowerPrecisionRunsOnCudaOnly)
{
  using PrecisionEnum = itk::UNetModel::PrecisionEnum;
  auto model = itk::UNetModel::New();
  model->SetFileName(UNetTest::ModelPath("mean2d"));
  EXPECT_EQ(model->GetPrecision(), PrecisionEnum::Float32);
  model->Load();
  for (const auto precision : { PrecisionEnum::Float16, PrecisionEnum::BFloat16 })
  {
    const auto before = model->GetMTime();
    model->SetPrecision(precision);
    EXPECT_EQ(model->GetPrecision(), precision);
    EXPECT_GT(model->GetMTime(), before);
    EXPECT_FALSE(model->IsLoaded()) << "a network loaded in another precision is not the one asked for";
    std::ostringstream name;
    name << "Precision " << precision << " runs on a CUDA device only; on device \"cpu\" use Float32.";
    try
    {
      model->Load();
      ADD_FAILURE() << precision << " loaded on the CPU";
    }
    catch (const itk::ExceptionObject & error)
    {
      EXPECT_NE(std::string(error.GetDescription()).find(name.str()), std::string::npos) << error.GetDescription();
    }
  }
  model->SetPrecision(PrecisionEnum::Float32);
  model->Load();
  EXPECT_TRUE(model->IsLoaded());
}

TEST(UNetModel, GeometryNeedsLoad)
{
  auto model = itk::UNetModel::New();
  EXPECT_THROW(model->GetBorder(0), itk::ExceptionObject);
}

TEST(UNetModel, PrintSelf)
{
  const auto         model = LoadModel("unet2d_valid", 2);
  std::ostringstream os;
  model->Print(os);
  EXPECT_NE(os.str().find("Border: 20 x 20"), std::string::npos) << os.str();
  EXPECT_NE(os.str().find("DownsamplingFactor: 4 x 4"), std::string::npos) << os.str();
  EXPECT_NE(os.str().find("Precision: Float32"), std::string::npos) << os.str();
}

namespace
{
/** Keeps what ITK's warnings print. */
class CapturedOutputWindow : public itk::OutputWindow
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(CapturedOutputWindow);
  using Self = CapturedOutputWindow;
  using Pointer = itk::SmartPointer<Self>;
  itkNewMacro(Self);
  void
  DisplayText(const char * text) override
  {
    m_Text += text;
  }
  std::string m_Text;

protected:
  CapturedOutputWindow() = default;
};
} // namespace

TEST(UNetModel, UnfreezableNetworkRunsAsSavedWithAWarning)
{
  auto model = itk::UNetModel::New();
  model->SetFileName(UNetTest::ModelPath("unfreezable2d"));
  model->SetImageDimension(2);
  const itk::OutputWindow::Pointer previous = itk::OutputWindow::GetInstance();
  const auto                       captured = CapturedOutputWindow::New();
  itk::OutputWindow::SetInstance(captured);
  model->Load();
  itk::OutputWindow::SetInstance(previous);
  EXPECT_NE(captured->m_Text.find("cannot be frozen"), std::string::npos) << captured->m_Text;
  EXPECT_FALSE(model->IsFrozen());
  EXPECT_EQ(model->GetBorder(0), 1u); // the mean filter inside, probed as usual

  const auto frozen = LoadModel("mean2d", 2);
  EXPECT_TRUE(frozen->IsFrozen());
  frozen->FreezeOff();
  EXPECT_FALSE(frozen->IsLoaded()); // another network now: loaded again by the next Load()
  frozen->Load();
  EXPECT_FALSE(frozen->IsFrozen());
}

TEST(UNetModel, ForwardMemoryEstimateFollowsMeasurement)
{
  // The estimate extrapolates two probe measurements; at a larger tile and batch it stays close to a measurement.
  for (const char * name : { "unet2d_valid", "unet2d_paper" })
  {
    SCOPED_TRACE(name);
    const auto                         model = LoadModel(name, 2);
    const itk::SizeValueType           edge = model->GetValidOutputSizeAtLeast(0, 700) + 2 * model->GetBorder(0);
    const itk::UNetModel::TileSizeType tile{ edge, edge };
    const double                       estimated = model->GetEstimatedForwardBytes(2, tile);
    const double                       measured = model->MeasureForwardBytes(2, tile);
    EXPECT_GT(measured, 0.0);
    EXPECT_NEAR(estimated / measured, 1.0, 0.3) << "estimated " << estimated << ", measured " << measured;
    EXPECT_DOUBLE_EQ(model->GetEstimatedForwardBytes(4, tile), 2.0 * estimated);
  }
}

TEST(UNetModel, AbortAskedWhileProbingStopsAtTheNextForwardPass)
{
  auto model = itk::UNetModel::New();
  model->SetFileName(UNetTest::ModelPath("unet2d_valid"));
  unsigned int asked = 0;
  EXPECT_THROW(model->Load([&asked]() { return ++asked == 3; }), itk::ProcessAborted);
  EXPECT_EQ(asked, 3u); // asked before each probe, and no probe after the answer
  EXPECT_FALSE(model->IsLoaded());
  EXPECT_THROW(model->GetBorder(0), itk::ExceptionObject);

  asked = 0;
  model->Load([&asked]() {
    ++asked;
    return false;
  });
  EXPECT_TRUE(model->IsLoaded());
  EXPECT_GT(asked, 10u);
}

namespace
{
/** The probabilities `model` gives for one smallest tile of `input` values (one channel). */
std::vector<float>
PredictSmallestTile(const itk::UNetModel * model, const std::vector<float> & input)
{
  const itk::UNetModel::TileSizeType tile{ model->GetMinimumInputSize(0), model->GetMinimumInputSize(1) };
  std::vector<float>                 output(model->GetNumberOfClasses() * model->GetMinimumOutputSize(0) *
                            model->GetMinimumOutputSize(1));
  model->PredictProbabilities(input.data(), 1, tile, output.data());
  return output;
}
} // namespace

TEST(UNetModel, AFileRewrittenSinceLoadingIsLoadedAgain)
{
  const auto        mean = LoadModel("mean2d", 2);
  const auto        sum = LoadModel("sum2d", 2);
  const std::string fileName = UNetTest::OutputPath("model.pt");
  std::filesystem::remove(fileName);
  UNetTest::RewriteFile(UNetTest::ModelPath("mean2d"), fileName);

  auto model = itk::UNetModel::New();
  model->SetFileName(fileName);
  model->Load();
  std::vector<float> input(model->GetMinimumInputSize(0) * model->GetMinimumInputSize(1));
  std::mt19937       random(5);
  std::generate(
    input.begin(), input.end(), [&random]() { return std::uniform_real_distribution<float>(-2, 2)(random); });
  EXPECT_EQ(PredictSmallestTile(model, input), PredictSmallestTile(mean, input));
  ASSERT_NE(PredictSmallestTile(sum, input), PredictSmallestTile(mean, input));
  const itk::ModifiedTimeType loaded = model->GetMTime();
  EXPECT_EQ(model->GetMTime(), loaded);

  UNetTest::RewriteFile(UNetTest::ModelPath("sum2d"), fileName); // retrained in place
  EXPECT_FALSE(model->IsLoaded());
  const itk::ModifiedTimeType changed = model->GetMTime();
  EXPECT_GT(changed, loaded);
  EXPECT_EQ(model->GetMTime(), changed); // one change, counted once
  // Until loaded again, the network loaded before still serves.
  EXPECT_EQ(PredictSmallestTile(model, input), PredictSmallestTile(mean, input));
  model->Load();
  EXPECT_TRUE(model->IsLoaded());
  EXPECT_EQ(PredictSmallestTile(model, input), PredictSmallestTile(sum, input));
  const itk::ModifiedTimeType reloaded = model->GetMTime();
  model->Load(); // unchanged since: nothing to do
  EXPECT_EQ(model->GetMTime(), reloaded);
  std::filesystem::remove(fileName);
}

TEST(UNetModel, ANetworkLoadedForEitherDimensionServesItsOwn)
{
  auto model = itk::UNetModel::New();
  model->SetFileName(UNetTest::ModelPath("unet2d_valid"));
  model->Load(); // ImageDimension 0: the network says 2
  const itk::ModifiedTimeType loaded = model->GetMTime();
  model->SetImageDimension(2);
  EXPECT_TRUE(model->IsLoaded());
  model->SetImageDimension(3);
  EXPECT_FALSE(model->IsLoaded());
  EXPECT_THROW(model->Load(), itk::ExceptionObject);
  model->SetImageDimension(2);
  EXPECT_TRUE(model->IsLoaded()); // the failed load left the network loaded before
  EXPECT_GT(model->GetMTime(), loaded);
}

TEST(UNetModel, PredictionPlannedForAnotherNetworkThrows)
{
  const auto                     model = LoadModel("unet2d_valid", 2);
  const itk::UNetNetworkGeometry planned = model->GetGeometry();
  model->SetFileName(UNetTest::ModelPath("mean2d")); // another thread, say, loads another network
  model->Load();
  std::vector<float> input(planned.MinimumInputSize[0] * planned.MinimumInputSize[1]);
  std::vector<float> output(input.size() * planned.Classes);
  try
  {
    model->PredictProbabilities(planned, input.data(), 1, planned.MinimumInputSize, output.data());
    ADD_FAILURE() << "no exception";
  }
  catch (const itk::ExceptionObject & error)
  {
    EXPECT_NE(std::string(error.GetDescription()).find("was loaded again, with another network"), std::string::npos)
      << error.GetDescription();
  }
}
