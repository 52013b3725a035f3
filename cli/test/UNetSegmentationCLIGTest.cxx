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

// Tests of the UNetSegmentation command-line module, run as Slicer runs it: a separate process, its description
// read with SlicerExecutionModel's ModuleDescriptionParser, its outputs compared with the filter's.

#include "ModuleDescription.h"
#include "ModuleDescriptionParser.h"

#include "itkImageBufferRange.h"
#include "itkImageFileReader.h"
#include "itkImageFileWriter.h"
#include "itkImageIOFactory.h"
#include "itkImageRegionConstIterator.h"
#include "itkImageRegionIteratorWithIndex.h"
#include "itkMersenneTwisterRandomVariateGenerator.h"
#include "itkRGBPixel.h"
#include "itkUNetCellSeparationImageFilter.h"
#include "itkUNetProcessHeap.h"
#include "itkUNetResamplingSegmentationImageFilter.h"
#include "itkVectorImage.h"
#include "itksys/SystemTools.hxx"

#include "gtest/gtest.h"

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace
{

using ImageType = itk::Image<float, 3>;
using LabelImageType = itk::Image<unsigned char, 3>;
using SegmenterType = itk::UNetSegmentationImageFilter<ImageType, LabelImageType>;

const std::string modelDirectory = UNET_TEST_MODEL_DIR;

std::string
Model(const std::string & name)
{
  return modelDirectory + "/" + name + ".pt";
}

std::string
ReadText(const std::string & fileName)
{
  std::ifstream     file(fileName);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

struct ModuleRun
{
  int         exitStatus{ -1 };
  std::string out;
  std::string err;
};

/** Each test works in a directory of its own. */
class UNetSegmentationCLI : public ::testing::Test
{
protected:
  void
  SetUp() override
  {
    const auto * test = ::testing::UnitTest::GetInstance()->current_test_info();
    m_Directory = std::string(UNET_TEST_OUTPUT_DIR) + "/" + test->name();
    itksys::SystemTools::RemoveADirectory(m_Directory);
    itksys::SystemTools::MakeDirectory(m_Directory);
  }

  std::string
  Path(const std::string & name) const
  {
    return m_Directory + "/" + name;
  }

  /** Runs the module with `arguments` (quoted for the shell where needed), as a separate process. */
  ModuleRun
  RunModule(const std::string & arguments) const
  {
    const std::string out = Path("stdout.txt");
    const std::string err = Path("stderr.txt");
    const std::string command = "'" + std::string(UNET_CLI) + "' " + arguments + " > '" + out + "' 2> '" + err + "'";
    const int         status = std::system(command.c_str());
    ModuleRun         run;
    run.exitStatus = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    run.out = ReadText(out);
    run.err = ReadText(err);
    return run;
  }

  std::string m_Directory;
};

/** A 3-D volume with anisotropic spacing, an origin and an oblique direction, and values around 0 (seeded). */
ImageType::Pointer
MakeVolume()
{
  auto                  image = ImageType::New();
  ImageType::RegionType region({ { 0, 0, 0 } }, { { 23, 19, 17 } });
  image->SetRegions(region);
  image->Allocate();
  const double spacing[] = { 0.7, 1.3, 2.1 };
  const double origin[] = { -10.0, 5.5, 3.25 };
  image->SetSpacing(spacing);
  image->SetOrigin(origin);
  const double             a = 0.5, b = 0.3; // Rotations about z, then x.
  ImageType::DirectionType direction;
  const double rz[3][3] = { { std::cos(a), -std::sin(a), 0 }, { std::sin(a), std::cos(a), 0 }, { 0, 0, 1 } };
  const double rx[3][3] = { { 1, 0, 0 }, { 0, std::cos(b), -std::sin(b) }, { 0, std::sin(b), std::cos(b) } };
  for (unsigned int i = 0; i < 3; ++i)
  {
    for (unsigned int j = 0; j < 3; ++j)
    {
      direction(i, j) = rx[i][0] * rz[0][j] + rx[i][1] * rz[1][j] + rx[i][2] * rz[2][j];
    }
  }
  image->SetDirection(direction);
  auto random = itk::Statistics::MersenneTwisterRandomVariateGenerator::New();
  random->SetSeed(17);
  for (itk::ImageRegionIteratorWithIndex<ImageType> it(image, region); !it.IsAtEnd(); ++it)
  {
    const auto & index = it.GetIndex();
    it.Set(static_cast<float>(std::sin(0.6 * index[0] + 0.2 * index[2]) + std::cos(0.45 * index[1]) +
                              random->GetUniformVariate(-0.5, 0.5)));
  }
  return image;
}

/** A 2-D image of values around 10 (seeded), spacing 1. */
itk::Image<float, 2>::Pointer
UNetTestImage2D()
{
  auto image = itk::Image<float, 2>::New();
  image->SetRegions(itk::Size<2>{ { 37, 29 } });
  image->Allocate();
  auto random = itk::Statistics::MersenneTwisterRandomVariateGenerator::New();
  random->SetSeed(23);
  for (itk::ImageRegionIteratorWithIndex<itk::Image<float, 2>> it(image, image->GetBufferedRegion()); !it.IsAtEnd();
       ++it)
  {
    it.Set(static_cast<float>(10.0 + 6.0 * std::sin(0.4 * it.GetIndex()[0]) * std::cos(0.3 * it.GetIndex()[1]) +
                              random->GetUniformVariate(-1.0, 1.0)));
  }
  return image;
}

/** The edge the tests tile with: small, so that the volume has several tile rows along every axis. */
itk::SizeValueType
SmallTileEdge(const std::string & model, unsigned int dimension)
{
  auto unet = itk::UNetModel::New();
  unet->SetFileName(model);
  unet->SetImageDimension(dimension);
  unet->Load();
  return unet->GetValidOutputSizeAtLeast(0, 6);
}

/** The filter's labels and probabilities for `fileName`, in one piece. */
SegmenterType::Pointer
SegmentWithFilter(const std::string & fileName, const std::string & model, itk::SizeValueType tileEdge,
                  const SegmenterType::FlipAxesType & flips = SegmenterType::FlipAxesType::Filled(false),
                  bool freeze = true, double normalizationMean = 0.25, double normalizationStandardDeviation = 0.8)
{
  auto segmenter = SegmenterType::New();
  segmenter->SetTestTimeFlipAxes(flips);
  segmenter->SetFreezeModel(freeze);
  segmenter->SetInput(itk::ReadImage<ImageType>(fileName));
  segmenter->SetModelFileName(model);
  SegmenterType::SizeType tile;
  tile.Fill(tileEdge);
  segmenter->SetTileSize(tile);
  segmenter->SetNormalizationMean({ normalizationMean });
  segmenter->SetNormalizationStandardDeviation({ normalizationStandardDeviation });
  segmenter->SetNumberOfTorchThreads(1);
  segmenter->Update();
  return segmenter;
}

/** The arguments 3D Slicer passes: every parameter that has a value, flags first, then the indexed images. */
std::string
SlicerArguments(const std::string & model, itk::SizeValueType tileEdge, const std::string & extra,
                const std::string & input, const std::string & output)
{
  const std::string edge = std::to_string(tileEdge);
  return "--model '" + model + "' --normalizationMean 0.25 --normalizationStandardDeviation 0.8 --tileSize " + edge +
         "," + edge + "," + edge +
         " --tileOverlap 0 --blending gaussian --boundaryCondition mirror --boundaryConstant 0 --device cpu "
         "--precision float32 "
         "--torchThreads 1 --tilesPerBatch 0 --memoryBudget 1024 " +
         extra + " '" + input + "' '" + output + "'";
}

void
ExpectSameGeometry(const itk::ImageBase<3> * expected, const itk::ImageBase<3> * actual, double tolerance)
{
  EXPECT_EQ(expected->GetLargestPossibleRegion(), actual->GetLargestPossibleRegion());
  for (unsigned int i = 0; i < 3; ++i)
  {
    EXPECT_NEAR(expected->GetSpacing()[i], actual->GetSpacing()[i], tolerance);
    EXPECT_NEAR(expected->GetOrigin()[i], actual->GetOrigin()[i], tolerance);
    for (unsigned int j = 0; j < 3; ++j)
    {
      EXPECT_NEAR(expected->GetDirection()(i, j), actual->GetDirection()(i, j), tolerance);
    }
  }
}

template <typename TImage>
size_t
CountDifferences(const TImage * expected, const TImage * actual)
{
  size_t                                differences = 0;
  itk::ImageRegionConstIterator<TImage> e(expected, expected->GetLargestPossibleRegion());
  itk::ImageRegionConstIterator<TImage> a(actual, expected->GetLargestPossibleRegion());
  for (; !e.IsAtEnd(); ++e, ++a)
  {
    differences += e.Get() != a.Get();
  }
  return differences;
}

itk::IOComponentEnum
ComponentTypeOf(const std::string & fileName)
{
  auto io = itk::ImageIOFactory::CreateImageIO(fileName.c_str(), itk::IOFileModeEnum::ReadMode);
  io->SetFileName(fileName);
  io->ReadImageInformation();
  return io->GetComponentType();
}

/** The module's progress tags: start first, end last, progress values between, in [0, 1], non-decreasing, 1 last.
 * Returns the progress values. */
std::vector<double>
ExpectSlicerProgress(const std::string & out)
{
  std::vector<std::string> tags;
  std::vector<double>      values;
  std::istringstream       lines(out);
  for (std::string line; std::getline(lines, line);)
  {
    for (const std::string tag : { "<filter-start>", "<filter-end>", "<filter-progress>" })
    {
      if (line.rfind(tag, 0) == 0)
      {
        tags.push_back(tag);
      }
    }
    if (line.rfind("<filter-progress>", 0) == 0)
    {
      values.push_back(std::stod(line.substr(std::string("<filter-progress>").size())));
      EXPECT_NE(line.find("</filter-progress>"), std::string::npos) << line;
    }
  }
  EXPECT_GE(tags.size(), 3u);
  if (tags.size() >= 3)
  {
    EXPECT_EQ(tags.front(), "<filter-start>");
    EXPECT_EQ(tags.back(), "<filter-end>");
    EXPECT_EQ(std::count(tags.begin(), tags.end(), "<filter-start>"), 1);
    EXPECT_EQ(std::count(tags.begin(), tags.end(), "<filter-end>"), 1);
  }
  for (size_t i = 0; i < values.size(); ++i)
  {
    EXPECT_GE(values[i], 0.0);
    EXPECT_LE(values[i], 1.0);
    if (i > 0)
    {
      EXPECT_GE(values[i], values[i - 1]) << "progress went back at value " << i;
    }
  }
  if (!values.empty())
  {
    EXPECT_DOUBLE_EQ(values.back(), 1.0);
  }
  return values;
}

struct ExpectedParameter
{
  std::string              name;
  std::string              tag;
  std::string              type;
  std::string              longFlag;
  std::string              index;
  std::string              channel;
  std::string              defaultValue;
  std::vector<std::string> elements;
};

/** Every parameter of the module's XML description: name, tag, type, long flag, index, channel, default, elements. */
std::vector<ExpectedParameter>
ExpectedParameters()
{
  return {
    { "inputVolume", "image", "any", "", "0", "input", "", {} },
    { "outputLabelVolume", "image", "label", "", "1", "output", "", {} },
    { "outputProbabilityVolume", "image", "vector", "probabilities", "", "output", "", {} },
    { "outputCellVolume", "image", "label", "cells", "", "output", "", {} },
    { "outputColorTable", "table", "color", "colorTable", "", "output", "", {} },
    { "modelFile", "file", "scalar", "model", "", "input", "", {} },
    { "normalizationMean", "float-vector", "", "normalizationMean", "", "", "", {} },
    { "normalizationStandardDeviation", "float-vector", "", "normalizationStandardDeviation", "", "", "", {} },
    { "standardizeTo", "float-vector", "", "standardizeTo", "", "", "", {} },
    { "noResample", "boolean", "", "noResample", "", "", "false", {} },
    { "interpolation", "string-enumeration", "", "interpolation", "", "", "linear", { "linear", "bspline" } },
    { "tileSize", "integer-vector", "", "tileSize", "", "", "", {} },
    { "tileOverlap", "integer", "", "tileOverlap", "", "", "-1", {} },
    { "blending", "string-enumeration", "", "blending", "", "", "gaussian", { "gaussian", "uniform" } },
    { "boundaryCondition",
      "string-enumeration",
      "",
      "boundaryCondition",
      "",
      "",
      "mirror",
      { "mirror", "zero", "constant" } },
    { "boundaryConstant", "double", "", "boundaryConstant", "", "", "0", {} },
    { "device", "string-enumeration", "", "device", "", "", "cpu", { "cpu", "cuda" } },
    { "precision", "string-enumeration", "", "precision", "", "", "float32", { "float32", "float16", "bfloat16" } },
    { "torchThreads", "integer", "", "torchThreads", "", "", "0", {} },
    { "tilesPerBatch", "integer", "", "tilesPerBatch", "", "", "0", {} },
    { "memoryBudget", "double", "", "memoryBudget", "", "", "1024", {} },
    { "flipAxes", "integer-vector", "", "flipAxes", "", "", "", {} },
    { "noTestTimeFlips", "boolean", "", "noTestTimeFlips", "", "", "false", {} },
    { "noFreeze", "boolean", "", "noFreeze", "", "", "false", {} },
    { "streamPieces", "integer", "", "streamPieces", "", "", "4", {} },
    { "cellClass", "integer", "", "cellClass", "", "", "-1", {} },
    { "seedThreshold", "double", "", "seedThreshold", "", "", "-1", {} },
    { "cellThreshold", "double", "", "cellThreshold", "", "", "-1", {} },
    { "modelBorder", "integer-vector", "", "", "", "output", "", {} },
    { "modelDownsamplingFactor", "integer-vector", "", "", "", "output", "", {} },
    { "numberOfClasses", "integer", "", "", "", "output", "0", {} },
    { "tileSizeUsed", "integer-vector", "", "", "", "output", "", {} },
    { "tileStrideUsed", "integer-vector", "", "", "", "output", "", {} },
    { "tilesPerBatchUsed", "integer", "", "", "", "output", "0", {} },
    { "normalizationApplied", "string", "", "", "", "output", "", {} },
    { "spacingApplied", "float-vector", "", "", "", "output", "", {} },
    { "estimatedWorkingMemory", "double", "", "", "", "output", "0", {} },
  };
}

/** The parameters of `description` by name, across its groups. */
std::map<std::string, const ModuleParameter *>
DeclaredParameters(const ModuleDescription & description)
{
  std::map<std::string, const ModuleParameter *> declared;
  for (const ModuleParameterGroup & group : description.GetParameterGroups())
  {
    for (const ModuleParameter & parameter : group.GetParameters())
    {
      declared[parameter.GetName()] = &parameter;
    }
  }
  return declared;
}

} // namespace

TEST_F(UNetSegmentationCLI, DescriptionParsesWithEveryParameter)
{
  const ModuleRun run = this->RunModule("--xml");
  ASSERT_EQ(run.exitStatus, 0) << run.err;

  ModuleDescription       description;
  ModuleDescriptionParser parser;
  ASSERT_EQ(parser.Parse(run.out, description), 0) << run.out;
  EXPECT_EQ(description.GetCategory(), "Segmentation.Deep Learning");
  EXPECT_EQ(description.GetTitle(), "U-Net Segmentation");
  EXPECT_FALSE(description.GetDescription().empty());
  EXPECT_FALSE(description.GetVersion().empty());
  EXPECT_FALSE(description.GetContributor().empty());
  EXPECT_FALSE(description.GetLicense().empty());
  EXPECT_FALSE(description.GetAcknowledgements().empty());
  EXPECT_TRUE(description.HasReturnParameters());

  for (const ModuleParameterGroup & group : description.GetParameterGroups())
  {
    EXPECT_FALSE(group.GetLabel().empty());
  }
  const std::vector<ExpectedParameter> expected = ExpectedParameters();
  auto                                 declared = DeclaredParameters(description);
  EXPECT_EQ(declared.size(), expected.size());
  for (const ExpectedParameter & e : expected)
  {
    SCOPED_TRACE(e.name);
    ASSERT_EQ(declared.count(e.name), 1u);
    const ModuleParameter & parameter = *declared[e.name];
    EXPECT_EQ(parameter.GetTag(), e.tag);
    EXPECT_EQ(parameter.GetType(), e.type);
    EXPECT_EQ(parameter.GetLongFlag(), e.longFlag);
    EXPECT_EQ(parameter.GetFlag(), "");
    EXPECT_EQ(parameter.GetIndex(), e.index);
    EXPECT_EQ(parameter.GetDefault(), e.defaultValue);
    EXPECT_EQ(parameter.GetElements(), e.elements);
    EXPECT_FALSE(parameter.GetLabel().empty());
    EXPECT_FALSE(parameter.GetDescription().empty());
    if (!e.channel.empty())
    {
      EXPECT_EQ(parameter.GetChannel(), e.channel);
    }
  }
}

TEST_F(UNetSegmentationCLI, DefaultsAreTheFiltersOwn)
{
  // The XML description states its defaults for Slicer's GUI; they must be the C++ filters' defaults, their one home.
  ModuleDescription description;
  ASSERT_EQ(ModuleDescriptionParser().Parse(this->RunModule("--xml").out, description), 0);
  const auto separation = itk::UNetCellSeparationImageFilter<itk::VectorImage<float, 3>>::New();
  const auto segmenter = itk::UNetSegmentationImageFilter<itk::Image<float, 3>>::New();
  const auto defaultOf = [&description](const char * name) {
    return std::stod(description.GetParameterDefaultValue(name));
  };
  // The settings a model card may hold default to -1, "the card's, else the filter's": Slicer passes every default.
  for (const char * fromCard : { "seedThreshold", "cellThreshold", "cellClass", "tileOverlap" })
  {
    EXPECT_EQ(defaultOf(fromCard), -1.0) << fromCard;
  }
  EXPECT_EQ(defaultOf("memoryBudget"), segmenter->GetMemoryBudget());
  EXPECT_EQ(defaultOf("tilesPerBatch"), segmenter->GetTilesPerBatch());
  EXPECT_EQ(defaultOf("torchThreads"), segmenter->GetNumberOfTorchThreads());
  EXPECT_EQ(defaultOf("boundaryConstant"), segmenter->GetBoundaryConstant());
  EXPECT_EQ(description.GetParameterDefaultValue("blending") == "gaussian", segmenter->GetGaussianBlending());
  EXPECT_EQ(description.GetParameterDefaultValue("noFreeze") == "true", !segmenter->GetFreezeModel());
  EXPECT_EQ(description.GetParameterDefaultValue("device"), segmenter->GetDevice());
  EXPECT_EQ(description.GetParameterDefaultValue("precision"), "float32");
  EXPECT_EQ(segmenter->GetPrecision(), itk::UNetModel::PrecisionEnum::Float32);

  // The separation's defaults stated in the descriptions' text, as Slicer's GUI shows them, are the filter's.
  const auto declared = DeclaredParameters(description);
  const auto describedAs = [&declared](const char * name) {
    const auto parameter = declared.find(name);
    return parameter == declared.end() ? std::string() : parameter->second->GetDescription();
  };
  const auto shown = [](double value) {
    std::ostringstream text;
    text << value;
    return text.str();
  };
  EXPECT_NE(describedAs("seedThreshold").find("else " + shown(separation->GetSeedThreshold()) + "."),
            std::string::npos);
  EXPECT_NE(describedAs("cellThreshold").find("else " + shown(separation->GetCellThreshold()) + "."),
            std::string::npos);
  EXPECT_NE(describedAs("cellClass")
              .find("(class " + std::to_string(separation->GetCellClass()) + ", seed threshold " +
                    shown(separation->GetSeedThreshold()) + ", cell threshold " +
                    shown(separation->GetCellThreshold()) + ")"),
            std::string::npos);
}

TEST_F(UNetSegmentationCLI, SlicerStyleRunOnNrrdEqualsFilterWithProgressAndReturnParameters)
{
  const std::string model = Model("unet3d_valid");
  const auto        edge = SmallTileEdge(model, 3);
  const std::string input = this->Path("volume.nrrd");
  const std::string output = this->Path("labels.nrrd");
  const std::string returned = this->Path("returned.params");
  itk::WriteImage(MakeVolume(), input);

  const ModuleRun run = this->RunModule(
    SlicerArguments(model, edge, "--streamPieces 3 --returnparameterfile '" + returned + "'", input, output));
  ASSERT_EQ(run.exitStatus, 0) << run.err;

  const auto segmenter = SegmentWithFilter(input, model, edge);
  const auto labels = itk::ReadImage<LabelImageType>(output);
  EXPECT_EQ(ComponentTypeOf(output), itk::IOComponentEnum::UCHAR);
  ExpectSameGeometry(itk::ReadImage<ImageType>(input), labels, 1e-12);
  EXPECT_EQ(CountDifferences<LabelImageType>(segmenter->GetOutput(), labels), 0u);

  // At least one progress value per tile.
  const auto   values = ExpectSlicerProgress(run.out);
  const auto & tiles = segmenter->GetTileGrid().GetNumberOfTiles();
  EXPECT_GE(values.size(), tiles[0] * tiles[1] * tiles[2]);
  EXPECT_GT(tiles[2], 2u); // So that the three pieces are real.

  // The returned parameters, read as Slicer reads them.
  ModuleDescription description;
  ASSERT_EQ(ModuleDescriptionParser().Parse(this->RunModule("--xml").out, description), 0);
  ASSERT_TRUE(description.ReadParameterFile(returned)) << ReadText(returned);
  const std::string b = std::to_string(segmenter->GetModel()->GetBorder(0));
  EXPECT_GT(segmenter->GetModel()->GetBorder(0), 0u);
  EXPECT_EQ(description.GetParameterValue("modelBorder"), b + "," + b + "," + b);
  const std::string f = std::to_string(segmenter->GetModel()->GetDownsamplingFactor(0));
  EXPECT_EQ(description.GetParameterValue("modelDownsamplingFactor"), f + "," + f + "," + f);
  EXPECT_EQ(description.GetParameterValue("numberOfClasses"), "2");
  const std::string e = std::to_string(edge);
  EXPECT_EQ(description.GetParameterValue("tileSizeUsed"), e + "," + e + "," + e);
  const std::string s = std::to_string(segmenter->GetTileStride()[0]);
  EXPECT_EQ(description.GetParameterValue("tileStrideUsed"), s + "," + s + "," + s);
  // The module keeps freed memory (mallopt), this process may not, and so their automatic batches may differ
  // (UNetProcessHeap): the module says which it used. Each process measures the network's forward memory when it
  // loads it; LibTorch's allocations differ slightly from run to run (0.15 % seen), so the module's estimate and this
  // process's for the same batch agree to a few percent, not exactly. The module wrote no probabilities, whose
  // buffers then count in the working memory.
  const unsigned int batch = std::stoul(description.GetParameterValue("tilesPerBatchUsed"));
  EXPECT_GE(batch, segmenter->GetTilePlan().GetBatchSize());
  if (itk::UNetProcessHeap::KeepsFreedMemory())
  {
    EXPECT_EQ(batch, segmenter->GetTilePlan().GetBatchSize());
  }
  segmenter->SetTilesPerBatch(batch);
  segmenter->SetGenerateProbabilities(false);
  segmenter->UpdateOutputInformation();
  EXPECT_NEAR(std::stod(description.GetParameterValue("estimatedWorkingMemory")),
              segmenter->GetEstimatedWorkingMemory(),
              0.03 * segmenter->GetEstimatedWorkingMemory());
}

TEST_F(UNetSegmentationCLI, SlicerStyleRunOnNiftiEqualsFilter)
{
  const std::string model = Model("unet3d_valid");
  const auto        edge = SmallTileEdge(model, 3);
  const std::string input = this->Path("volume.nii.gz");
  const std::string output = this->Path("labels.nii.gz");
  itk::WriteImage(MakeVolume(), input);

  const ModuleRun run = this->RunModule(SlicerArguments(model, edge, "--streamPieces 2 --flipAxes 0,2", input, output));
  ASSERT_EQ(run.exitStatus, 0) << run.err;
  ExpectSlicerProgress(run.out);

  SegmenterType::FlipAxesType flips;
  flips[0] = true;
  flips[1] = false;
  flips[2] = true;
  const auto segmenter = SegmentWithFilter(input, model, edge, flips);
  const auto labels = itk::ReadImage<LabelImageType>(output);
  EXPECT_EQ(ComponentTypeOf(output), itk::IOComponentEnum::UCHAR);
  // NIfTI keeps the geometry in single precision.
  ExpectSameGeometry(itk::ReadImage<ImageType>(input), labels, 1e-5);
  EXPECT_EQ(CountDifferences<LabelImageType>(segmenter->GetOutput(), labels), 0u);
}

TEST_F(UNetSegmentationCLI, StreamedMetaImageWithProbabilitiesEqualsFilter)
{
  const std::string model = Model("unet3d_valid");
  const auto        edge = SmallTileEdge(model, 3);
  const std::string input = this->Path("volume.mha");
  const std::string output = this->Path("labels.mha");
  const std::string probabilitiesFile = this->Path("probabilities.mha");
  itk::WriteImage(MakeVolume(), input);
  // Stale outputs of another size: a streamed MetaImage is pasted into an existing file, so they must go first.
  auto stale = LabelImageType::New();
  stale->SetRegions(LabelImageType::SizeType{ { 3, 2, 5 } });
  stale->Allocate(true);
  itk::WriteImage(stale, output);
  itk::WriteImage(stale, probabilitiesFile);

  const ModuleRun run = this->RunModule(SlicerArguments(
    model, edge, "--noFreeze --streamPieces 3 --probabilities '" + probabilitiesFile + "'", input, output));
  ASSERT_EQ(run.exitStatus, 0) << run.err;
  ExpectSlicerProgress(run.out);

  const auto segmenter = SegmentWithFilter(input, model, edge, SegmenterType::FlipAxesType::Filled(false), false);
  const auto labels = itk::ReadImage<LabelImageType>(output);
  ExpectSameGeometry(itk::ReadImage<ImageType>(input), labels, 1e-12);
  EXPECT_EQ(CountDifferences<LabelImageType>(segmenter->GetOutput(), labels), 0u);

  using ProbabilityImageType = SegmenterType::ProbabilityImageType;
  const auto probabilities = itk::ReadImage<ProbabilityImageType>(probabilitiesFile);
  EXPECT_EQ(ComponentTypeOf(probabilitiesFile), itk::IOComponentEnum::FLOAT);
  ASSERT_EQ(probabilities->GetNumberOfComponentsPerPixel(), 2u);
  ExpectSameGeometry(itk::ReadImage<ImageType>(input), probabilities, 1e-12);
  EXPECT_EQ(CountDifferences<ProbabilityImageType>(segmenter->GetProbabilityOutput(), probabilities), 0u);
}

TEST_F(UNetSegmentationCLI, CellsEqualTheSeparationFilter)
{
  // The cells the module writes equal UNetCellSeparationImageFilter on the filter's probabilities; thresholds at
  // quantiles of this random network's cell probabilities, so that there are several seeds and cells grow.
  const std::string model = Model("unet3d_valid");
  const auto        edge = SmallTileEdge(model, 3);
  const std::string input = this->Path("volume.nrrd");
  const std::string output = this->Path("labels.nrrd");
  const std::string cellsFile = this->Path("cells.nrrd");
  itk::WriteImage(MakeVolume(), input);
  const auto segmenter = SegmentWithFilter(input, model, edge, SegmenterType::FlipAxesType::Filled(false), false);
  std::vector<float> cellProbabilities;
  const auto *       probabilities = segmenter->GetProbabilityOutput();
  for (itk::ImageRegionConstIterator<SegmenterType::ProbabilityImageType> it(probabilities,
                                                                             probabilities->GetLargestPossibleRegion());
       !it.IsAtEnd();
       ++it)
  {
    cellProbabilities.push_back(it.Get()[1]);
  }
  std::sort(cellProbabilities.begin(), cellProbabilities.end());
  const double seedThreshold = cellProbabilities[cellProbabilities.size() * 9 / 10];
  const double cellThreshold = cellProbabilities[cellProbabilities.size() / 4];

  using CellImageType = itk::Image<unsigned int, 3>;
  auto separation = itk::UNetCellSeparationImageFilter<SegmenterType::ProbabilityImageType, CellImageType>::New();
  separation->SetInput(probabilities);
  separation->SetSeedThreshold(seedThreshold);
  separation->SetCellThreshold(cellThreshold);
  separation->Update();
  ASSERT_GE(separation->GetNumberOfCells(), 2u);

  std::ostringstream thresholds;
  thresholds.precision(17);
  thresholds << "--noFreeze --streamPieces 3 --seedThreshold " << seedThreshold << " --cellThreshold " << cellThreshold
             << " --cells '" << cellsFile << "'";
  const ModuleRun run = this->RunModule(SlicerArguments(model, edge, thresholds.str(), input, output));
  ASSERT_EQ(run.exitStatus, 0) << run.err;
  ExpectSlicerProgress(run.out);
  // The whole image, for the cells, and the summary says why the pieces asked for are not used.
  EXPECT_NE(run.out.find(", 1 piece(s) (--streamPieces 3 not used: --cells separates the whole image)"),
            std::string::npos)
    << run.out;
  EXPECT_NE(run.out.find("Cells: " + std::to_string(separation->GetNumberOfCells())), std::string::npos) << run.out;

  const auto cells = itk::ReadImage<CellImageType>(cellsFile);
  EXPECT_EQ(ComponentTypeOf(cellsFile), itk::IOComponentEnum::UINT);
  ExpectSameGeometry(itk::ReadImage<ImageType>(input), cells, 1e-12);
  EXPECT_EQ(CountDifferences<CellImageType>(separation->GetOutput(), cells), 0u);
  EXPECT_EQ(CountDifferences<LabelImageType>(segmenter->GetOutput(), itk::ReadImage<LabelImageType>(output)), 0u);
}

TEST_F(UNetSegmentationCLI, ModelCardSuppliesTheDefaultsAndTheClassesForSlicer)
{
  // card_full2d: mean2d with a card that normalises with mean 10 and standard deviation 4, flips along x, overlaps
  // by 2, separates cells at seeds 0.6 and cells 0.3, names the classes, and was trained at 0.5 x 0.5 mm.
  using Image2D = itk::Image<float, 2>;
  using Labels2D = itk::Image<unsigned char, 2>;
  using Resampling2D = itk::UNetResamplingSegmentationImageFilter<Image2D, Labels2D>;
  const std::string model = Model("card_full2d");
  auto              image = UNetTestImage2D();
  const std::string input = this->Path("image.nrrd");
  const std::string output = this->Path("labels.nrrd");
  const std::string colors = this->Path("classes.ctbl");
  const std::string returned = this->Path("returned.txt");
  itk::WriteImage(image, input);

  // Without options, at the image's own spacing of 1 mm: resampled to the card's 0.5 mm and back.
  ModuleRun run = this->RunModule("--model '" + model + "' --colorTable '" + colors + "' --returnparameterfile '" +
                                  returned + "' '" + input + "' '" + output + "'");
  ASSERT_EQ(run.exitStatus, 0) << run.err;
  auto reference = Resampling2D::New();
  reference->SetInput(image);
  reference->GetSegmenter()->SetModelFileName(model);
  reference->Update();
  EXPECT_TRUE(reference->GetResampled());
  EXPECT_EQ(CountDifferences<Labels2D>(reference->GetOutput(), itk::ReadImage<Labels2D>(output)), 0u);
  EXPECT_EQ(ReadText(colors),
            "# Color table file classes.ctbl\n# 2 values\n0 background 0 0 0 255\n"
            "1 cell_interior 0 200 0 255\n");
  const std::string header = ReadText(output).substr(0, 2000);
  EXPECT_NE(header.find("Segment0_Name:=cell interior"), std::string::npos) << header;
  EXPECT_NE(header.find("Segment0_LabelValue:=1"), std::string::npos) << header;
  EXPECT_NE(header.find("Segment0_Color:=0 0.784314 0"), std::string::npos) << header;
  ModuleDescription description;
  ASSERT_EQ(ModuleDescriptionParser().Parse(this->RunModule("--xml").out, description), 0);
  ASSERT_TRUE(description.ReadParameterFile(returned)) << ReadText(returned);
  EXPECT_EQ(description.GetParameterValue("spacingApplied"), "0.5,0.5");
  EXPECT_NE(
    description.GetParameterValue("normalizationApplied").find("from the model card: mean 10, standard deviation 4"),
    std::string::npos)
    << description.GetParameterValue("normalizationApplied");
}

TEST_F(UNetSegmentationCLI, ModelCardSettingsGiveWayToGivenOptions)
{
  // card_full2d as above; without resampling, its normalisation, flips, overlap and cell thresholds apply unless given.
  using Image2D = itk::Image<float, 2>;
  using Labels2D = itk::Image<unsigned char, 2>;
  const std::string model = Model("card_full2d");
  auto              image = UNetTestImage2D();
  const std::string input = this->Path("image.nrrd");
  const std::string output = this->Path("labels.nrrd");
  itk::WriteImage(image, input);

  // --noResample: the segmentation filter with the card's normalisation, flips and overlap.
  ModuleRun run = this->RunModule("--model '" + model + "' --noResample '" + input + "' '" + output + "'");
  ASSERT_EQ(run.exitStatus, 0) << run.err;
  auto plain = itk::UNetSegmentationImageFilter<Image2D, Labels2D>::New();
  plain->SetInput(image);
  plain->SetModelFileName(Model("mean2d"));
  plain->SetNormalizationMean({ 10.0 });
  plain->SetNormalizationStandardDeviation({ 4.0 });
  auto x = plain->GetTestTimeFlipAxes();
  x[0] = true;
  plain->SetTestTimeFlipAxes(x);
  plain->SetTileOverlap(2);
  plain->Update();
  EXPECT_EQ(CountDifferences<Labels2D>(plain->GetOutput(), itk::ReadImage<Labels2D>(output)), 0u);

  // A given option is passed on even where it is the filter's default: --tileOverlap 0 instead of the card's 2.
  run = this->RunModule("--model '" + model + "' --noResample --tileOverlap 0 '" + input + "' '" + output + "'");
  ASSERT_EQ(run.exitStatus, 0) << run.err;
  plain->SetTileOverlap(0);
  plain->Update();
  EXPECT_EQ(CountDifferences<Labels2D>(plain->GetOutput(), itk::ReadImage<Labels2D>(output)), 0u);

  // As Slicer runs it, every option with its default given: the same as none given (-1 is "the card's").
  const std::string cells = this->Path("cells.nrrd");
  run =
    this->RunModule("--model '" + model + "' --noResample --cells '" + cells + "' '" + input + "' '" + output + "'");
  ASSERT_EQ(run.exitStatus, 0) << run.err;
  using Cells2D = itk::Image<unsigned int, 2>;
  const auto cellsWithoutOptions = itk::ReadImage<Cells2D>(cells);
  run =
    this->RunModule("--model '" + model +
                    "' --noResample --tileOverlap -1 --cellClass -1 --seedThreshold -1 --cellThreshold -1 --cells '" +
                    cells + "' '" + input + "' '" + output + "'");
  ASSERT_EQ(run.exitStatus, 0) << run.err;
  plain->SetTileOverlap(2);
  plain->Update();
  EXPECT_EQ(CountDifferences<Labels2D>(plain->GetOutput(), itk::ReadImage<Labels2D>(output)), 0u);
  EXPECT_EQ(CountDifferences<Cells2D>(cellsWithoutOptions, itk::ReadImage<Cells2D>(cells)), 0u);

  // The user's options win: here a normalisation that makes every voxel a cell.
  run =
    this->RunModule("--model '" + model + "' --noResample --normalizationMean -1000 '" + input + "' '" + output + "'");
  ASSERT_EQ(run.exitStatus, 0) << run.err;
  const auto allCells = itk::ReadImage<Labels2D>(output);
  EXPECT_EQ(std::count(allCells->GetBufferPointer(),
                       allCells->GetBufferPointer() + allCells->GetBufferedRegion().GetNumberOfPixels(),
                       1),
            static_cast<std::ptrdiff_t>(allCells->GetBufferedRegion().GetNumberOfPixels()));
}

TEST_F(UNetSegmentationCLI, ASingleSliceVolumeIsSegmentedByA2DNetworkOnItsOwnGrid)
{
  // 3D Slicer hands a CLI module a 2-D image as a volume of one slice: here ISBI slice 23 as a 512 x 512 x 1 NRRD with
  // its own spacing, origin and an oblique direction, and a 1 x 48 x 40 slice across x with mean2d. The labels and
  // probabilities are those of the 2-D image, on the volume's grid.
  using Slice = itk::Image<float, 2>;
  using Volume = itk::Image<float, 3>;
  using SliceLabels = itk::Image<unsigned char, 2>;
  using VolumeLabels = itk::Image<unsigned char, 3>;
  const auto sameGrid = [](const itk::ImageBase<3> * expected, const itk::ImageBase<3> * actual) {
    EXPECT_EQ(expected->GetLargestPossibleRegion(), actual->GetLargestPossibleRegion());
    EXPECT_EQ(expected->GetSpacing(), actual->GetSpacing());
    EXPECT_EQ(expected->GetOrigin(), actual->GetOrigin());
    EXPECT_TRUE(expected->GetDirection().GetVnlMatrix().is_equal(actual->GetDirection().GetVnlMatrix(), 1e-9));
  };
  const auto check = [this, &sameGrid](const Slice * slice, const Volume::SizeType & size, const std::string & model) {
    SCOPED_TRACE(model);
    auto volume = Volume::New();
    volume->SetRegions(size);
    const double spacing[] = { 1.0, 1.0, 2.5 };
    const double origin[] = { -3.0, 7.0, 11.0 };
    volume->SetSpacing(spacing);
    volume->SetOrigin(origin);
    Volume::DirectionType direction;
    direction.SetIdentity();
    direction(0, 0) = direction(1, 1) = std::cos(0.3);
    direction(0, 1) = -std::sin(0.3);
    direction(1, 0) = std::sin(0.3);
    volume->SetDirection(direction);
    volume->Allocate();
    std::copy_n(slice->GetBufferPointer(), slice->GetBufferedRegion().GetNumberOfPixels(), volume->GetBufferPointer());
    const std::string sliceFile = this->Path("slice.nrrd");
    const std::string volumeFile = this->Path("volume.nrrd");
    itk::WriteImage(slice, sliceFile);
    itk::WriteImage(volume, volumeFile);
    for (const std::string & file : { sliceFile, volumeFile })
    {
      const ModuleRun run = this->RunModule("--model '" + model + "' --probabilities '" + file +
                                            ".probabilities.nrrd' '" + file + "' '" + file + ".labels.nrrd'");
      ASSERT_EQ(run.exitStatus, 0) << run.err;
    }
    const auto sliceLabels = itk::ReadImage<SliceLabels>(sliceFile + ".labels.nrrd");
    const auto volumeLabels = itk::ReadImage<VolumeLabels>(volumeFile + ".labels.nrrd");
    sameGrid(volume.GetPointer(), volumeLabels.GetPointer());
    EXPECT_TRUE(std::equal(sliceLabels->GetBufferPointer(),
                           sliceLabels->GetBufferPointer() + sliceLabels->GetBufferedRegion().GetNumberOfPixels(),
                           volumeLabels->GetBufferPointer()));
    const auto sliceProbabilities = itk::ReadImage<itk::VectorImage<float, 2>>(sliceFile + ".probabilities.nrrd");
    const auto volumeProbabilities = itk::ReadImage<itk::VectorImage<float, 3>>(volumeFile + ".probabilities.nrrd");
    sameGrid(volume.GetPointer(), volumeProbabilities.GetPointer());
    ASSERT_EQ(volumeProbabilities->GetPixelContainer()->Size(), sliceProbabilities->GetPixelContainer()->Size());
    EXPECT_TRUE(std::equal(sliceProbabilities->GetBufferPointer(),
                           sliceProbabilities->GetBufferPointer() + sliceProbabilities->GetPixelContainer()->Size(),
                           volumeProbabilities->GetBufferPointer()));
  };
  const auto isbi = itk::ReadImage<Slice>(std::string(UNET_ISBI_DIR) + "/image/23.png");
  check(isbi, Volume::SizeType{ { 512, 512, 1 } }, UNET_BUNDLED_MODEL);
  auto small = Slice::New();
  small->SetRegions(Slice::SizeType{ { 48, 40 } });
  small->Allocate();
  float value = 0.0f;
  for (float & voxel : itk::ImageBufferRange<Slice>(*small))
  {
    voxel = (value = std::fmod(value + 0.37f, 3.0f));
  }
  check(small, Volume::SizeType{ { 1, 48, 40 } }, Model("mean2d"));
}

TEST_F(UNetSegmentationCLI, StandardizedEqualsTheFilterNormalizedWithTheImagesOwnStatistics)
{
  // --standardizeTo M,S maps the image to mean M and standard deviation S before the normalisation given (0.25, 0.8
  // in SlicerArguments): the filter with (x - m) / s * S + M, then (. - 0.25) / 0.8, as one normalisation, where m
  // and s (sample standard deviation) are counted here voxel by voxel.
  const std::string model = Model("unet3d_valid");
  const auto        edge = SmallTileEdge(model, 3);
  const std::string input = this->Path("volume.nrrd");
  const std::string output = this->Path("labels.nrrd");
  const std::string probabilitiesFile = this->Path("probabilities.nrrd");
  const auto        volume = MakeVolume();
  itk::WriteImage(volume, input);
  double sum = 0.0;
  double count = 0.0;
  for (itk::ImageRegionConstIterator<ImageType> it(volume, volume->GetLargestPossibleRegion()); !it.IsAtEnd(); ++it)
  {
    sum += it.Get();
    ++count;
  }
  const double m = sum / count;
  double       squares = 0.0;
  for (itk::ImageRegionConstIterator<ImageType> it(volume, volume->GetLargestPossibleRegion()); !it.IsAtEnd(); ++it)
  {
    squares += (it.Get() - m) * (it.Get() - m);
  }
  const double s = std::sqrt(squares / (count - 1.0));
  const double toMean = 3.0;
  const double toStandardDeviation = 2.0;

  const ModuleRun run = this->RunModule(SlicerArguments(
    model, edge, "--streamPieces 2 --standardizeTo 3,2 --probabilities '" + probabilitiesFile + "'", input, output));
  ASSERT_EQ(run.exitStatus, 0) << run.err;
  ExpectSlicerProgress(run.out);

  const auto segmenter = SegmentWithFilter(input,
                                           model,
                                           edge,
                                           SegmenterType::FlipAxesType::Filled(false),
                                           true,
                                           m + (0.25 - toMean) * s / toStandardDeviation,
                                           s * 0.8 / toStandardDeviation);

  using ProbabilityImageType = SegmenterType::ProbabilityImageType;
  const auto probabilities = itk::ReadImage<ProbabilityImageType>(probabilitiesFile);
  ASSERT_EQ(probabilities->GetLargestPossibleRegion(), segmenter->GetProbabilityOutput()->GetLargestPossibleRegion());
  double largest = 0.0;
  for (itk::ImageRegionConstIterator<ProbabilityImageType>
         e(segmenter->GetProbabilityOutput(), probabilities->GetLargestPossibleRegion()),
       a(probabilities, probabilities->GetLargestPossibleRegion());
       !e.IsAtEnd();
       ++e, ++a)
  {
    for (unsigned int k = 0; k < 2; ++k)
    {
      largest = std::max(largest, std::abs(static_cast<double>(e.Get()[k]) - a.Get()[k]));
    }
  }
  EXPECT_LT(largest, 1e-5); // m and s summed in another order
  // ... and not the plain normalisation's: the standardisation changed what the network saw.
  const auto plain = SegmentWithFilter(input, model, edge);
  EXPECT_GT(CountDifferences<ProbabilityImageType>(plain->GetProbabilityOutput(), probabilities), 0u);
}

TEST_F(UNetSegmentationCLI, BadCellSeparationFailsBeforeSegmenting)
{
  const std::string input = this->Path("volume.nrrd");
  itk::WriteImage(MakeVolume(), input);
  const std::string output = this->Path("labels.nrrd");
  const ModuleRun   run =
    this->RunModule("--model '" + Model("unet3d_valid") + "' --seedThreshold 0.3 --cellThreshold 0.6 --cells '" +
                    this->Path("cells.nrrd") + "' '" + input + "' '" + output + "'");
  EXPECT_NE(run.exitStatus, 0);
  EXPECT_NE(run.err.find("CellThreshold must be in (0, SeedThreshold = 0.3]"), std::string::npos) << run.err;
  EXPECT_EQ(run.out.find("<filter-progress>"), std::string::npos) << run.out; // nothing was segmented
  EXPECT_FALSE(itksys::SystemTools::FileExists(output));
}

TEST_F(UNetSegmentationCLI, RgbPngFeedsThreeChannelNetwork)
{
  using RgbImageType = itk::Image<itk::RGBPixel<unsigned char>, 2>;
  using ChannelsImageType = itk::VectorImage<float, 2>;
  auto rgb = RgbImageType::New();
  rgb->SetRegions(RgbImageType::SizeType{ { 45, 38 } });
  rgb->Allocate();
  auto random = itk::Statistics::MersenneTwisterRandomVariateGenerator::New();
  random->SetSeed(5);
  for (itk::ImageRegionIterator<RgbImageType> it(rgb, rgb->GetLargestPossibleRegion()); !it.IsAtEnd(); ++it)
  {
    itk::RGBPixel<unsigned char> pixel;
    for (unsigned int c = 0; c < 3; ++c)
    {
      pixel[c] = static_cast<unsigned char>(random->GetIntegerVariate(255));
    }
    it.Set(pixel);
  }
  const std::string input = this->Path("rgb.png");
  const std::string output = this->Path("labels.png");
  itk::WriteImage(rgb, input);

  const std::string model = Model("unet2d_rgb");
  const ModuleRun   run =
    this->RunModule("--model '" + model + "' --normalizationMean 100,128,150 --normalizationStandardDeviation 60 '" +
                    input + "' '" + output + "'");
  ASSERT_EQ(run.exitStatus, 0) << run.err;

  auto segmenter = itk::UNetSegmentationImageFilter<ChannelsImageType>::New();
  segmenter->SetInput(itk::ReadImage<ChannelsImageType>(input));
  segmenter->SetModelFileName(model);
  segmenter->SetNormalizationMean({ 100, 128, 150 });
  segmenter->SetNormalizationStandardDeviation({ 60 });
  segmenter->Update();
  using Labels2DType = itk::Image<unsigned char, 2>;
  EXPECT_EQ(CountDifferences<Labels2DType>(segmenter->GetOutput(), itk::ReadImage<Labels2DType>(output)), 0u);
}

TEST_F(UNetSegmentationCLI, MissingOrCorruptModelFailsWithMessage)
{
  const std::string input = this->Path("volume.nrrd");
  itk::WriteImage(MakeVolume(), input);
  const std::string output = this->Path("labels.nrrd");

  ModuleRun run = this->RunModule("--model '" + Model("does_not_exist") + "' '" + input + "' '" + output + "'");
  EXPECT_NE(run.exitStatus, 0);
  EXPECT_NE(run.err.find("does not exist"), std::string::npos) << run.err;
  EXPECT_EQ(run.out.find("<filter-end>"), std::string::npos);

  run = this->RunModule("--model '" + Model("corrupt") + "' '" + input + "' '" + output + "'");
  EXPECT_NE(run.exitStatus, 0);
  EXPECT_NE(run.err.find("Cannot load a TorchScript model"), std::string::npos) << run.err;

  run = this->RunModule("'" + input + "' '" + output + "'");
  EXPECT_NE(run.exitStatus, 0);
  EXPECT_NE(run.err.find("--model"), std::string::npos) << run.err;
  EXPECT_FALSE(itksys::SystemTools::FileExists(output));
}

TEST_F(UNetSegmentationCLI, BadArgumentsFailWithMessage)
{
  const std::string input = this->Path("volume.nrrd");
  itk::WriteImage(MakeVolume(), input);
  const std::string output = this->Path("labels.nrrd");
  const std::string model = "--model '" + Model("unet3d_valid") + "' ";

  ModuleRun run = this->RunModule(model + "--tileSize 5,5 '" + input + "' '" + output + "'");
  EXPECT_NE(run.exitStatus, 0);
  EXPECT_NE(run.err.find("--tileSize takes one value or 3"), std::string::npos) << run.err;

  auto unet = itk::UNetModel::New();
  unet->SetFileName(Model("unet3d_valid"));
  unet->SetImageDimension(3);
  unet->Load();
  auto invalidEdge = unet->GetMinimumOutputSize(0) + 1;
  while (unet->IsValidOutputSize(0, invalidEdge))
  {
    ++invalidEdge;
  }
  run = this->RunModule(model + "--tileSize " + std::to_string(invalidEdge) + " '" + input + "' '" + output + "'");
  EXPECT_NE(run.exitStatus, 0);
  EXPECT_NE(run.err.find("is not valid for the network"), std::string::npos) << run.err;

  run = this->RunModule(model + "--standardizeTo 100 '" + input + "' '" + output + "'");
  EXPECT_NE(run.exitStatus, 0);
  EXPECT_NE(run.err.find("--standardizeTo takes two values, a mean and a positive standard deviation; got 1"),
            std::string::npos)
    << run.err;
  run = this->RunModule(model + "--standardizeTo 100,0 '" + input + "' '" + output + "'");
  EXPECT_NE(run.exitStatus, 0);
  EXPECT_NE(run.err.find("--standardizeTo: the standard deviation must be positive and finite; got 0"),
            std::string::npos)
    << run.err;
  run = this->RunModule(model + "--standardizeTo nan,1 '" + input + "' '" + output + "'");
  EXPECT_NE(run.exitStatus, 0);
  EXPECT_NE(run.err.find("--standardizeTo: the mean must be finite; got nan"), std::string::npos) << run.err;

  run = this->RunModule(model + "--precision float16 '" + input + "' '" + output + "'");
  EXPECT_NE(run.exitStatus, 0);
  EXPECT_NE(run.err.find("Precision Float16 runs on a CUDA device only; on device \"cpu\" use Float32"),
            std::string::npos)
    << run.err;

  run = this->RunModule(model + "--flipAxes 3 '" + input + "' '" + output + "'");
  EXPECT_NE(run.exitStatus, 0);
  EXPECT_NE(run.err.find("--flipAxes takes axes 0 to 2"), std::string::npos) << run.err;

  for (const auto & [option, message] : std::map<std::string, std::string>{
         { "--streamPieces 0", "--streamPieces must be at least 1; got 0" },
         { "--tileOverlap -2", "--tileOverlap must not be negative (-1: the model card's value); got -2" },
         { "--cellClass -3", "--cellClass must not be negative (-1: the model card's value); got -3" },
         { "--tilesPerBatch -2", "--tilesPerBatch must not be negative; got -2" },
         { "--torchThreads -3", "--torchThreads must not be negative; got -3" } })
  {
    run = this->RunModule(model + option + " '" + input + "' '" + output + "'");
    EXPECT_NE(run.exitStatus, 0) << option;
    EXPECT_NE(run.err.find(message), std::string::npos) << option << ": " << run.err;
  }

  run = this->RunModule(model + "'" + this->Path("missing.nrrd") + "' '" + output + "'");
  EXPECT_NE(run.exitStatus, 0);
  EXPECT_NE(run.err.find("missing.nrrd"), std::string::npos) << run.err;

  run = this->RunModule(model + "'" + input + "' '" + this->Path("labels.unknown") + "'");
  EXPECT_NE(run.exitStatus, 0);
  EXPECT_NE(run.err.find("labels.unknown"), std::string::npos) << run.err;
  EXPECT_FALSE(itksys::SystemTools::FileExists(output));
}
