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

// The 3D Slicer command-line module: segments any 2-D or 3-D image ITK reads with a TorchScript U-Net.
//
//   UNetSegmentation --model unet.pt [options] input.nrrd labels.nrrd
//   UNetSegmentation --xml              (the description Slicer builds its GUI from: UNetSegmentation.xml)
//
// GenerateCLP makes the argument parser from UNetSegmentation.xml. Progress goes to standard output as the tags
// Slicer reads; errors go to standard error with a non-zero exit status.

#include "UNetSegmentationCLP.h"

#include "itkCastImageFilter.h"
#include "itkExtractImageFilter.h"
#include "itkImageAlgorithm.h"
#include "itkImageFileReader.h"
#include "itkImageFileWriter.h"
#include "itkImageIOFactory.h"
#include "itkImageRegionSplitterSlowDimension.h"
#include "itkRealTimeClock.h"
#include "itkMetaDataObject.h"
#include "itkUNetCellSeparationImageFilter.h"
#include "itkUNetResamplingSegmentationImageFilter.h"
#include "itkVectorImage.h"
#include "itksys/SystemTools.hxx"

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <sstream>
#include <type_traits>
#include <vector>

#if defined(__GLIBC__)
#  include <malloc.h>
#endif

namespace
{

/** Writes the progress tags of SlicerExecutionModel's convention on standard output, flushed, as Slicer's
 * itkPluginFilterWatcher does (SlicerExecutionModel itself ships no watcher): one <filter-start>, a
 * <filter-progress> in [0, 1] per step, one <filter-end>. Slicer shows them as the module's progress bar. */
class SlicerProgressReporter
{
public:
  SlicerProgressReporter(const std::string & name, const std::string & comment)
    : m_Name(name)
    , m_Start(m_Clock->GetTimeInSeconds())
  {
    std::cout << "<filter-start>\n<filter-name>" << m_Name << "</filter-name>\n<filter-comment> \"" << comment
              << "\" </filter-comment>\n</filter-start>" << std::endl;
  }

  /** Reports only progress forward: ITK 5.2's threshold filters, inside the cell separation, report theirs out of
   * order from several threads, and a progress bar should not go back. */
  void
  Report(double fraction)
  {
    if (fraction >= m_Reported)
    {
      m_Reported = fraction;
      std::cout << "<filter-progress>" << fraction << "</filter-progress>" << std::endl;
    }
  }

  void
  End() const
  {
    std::cout << "<filter-end>\n<filter-name>" << m_Name << "</filter-name>\n<filter-time>"
              << m_Clock->GetTimeInSeconds() - m_Start << "</filter-time>\n</filter-end>" << std::endl;
  }

private:
  itk::RealTimeClock::Pointer m_Clock{ itk::RealTimeClock::New() };
  std::string                 m_Name;
  double                      m_Start;
  double                      m_Reported{ 0.0 };
};

/** Writes one output of the pipeline that arrives piece by piece: pasted into the file piece by piece where its
 * format can be written so (uncompressed MetaImage), otherwise gathered into a whole image written at the end. */
template <unsigned int VDimension>
class PieceWriter
{
public:
  using RegionType = itk::ImageRegion<VDimension>;
  virtual ~PieceWriter() = default;
  /** Brings the piece up to date (running the pipeline unless it is already) and writes or gathers it. */
  virtual void
  Write(const RegionType & piece) = 0;
  virtual void
  Finish() = 0;
};

template <typename TImage>
class ImagePieceWriter final : public PieceWriter<TImage::ImageDimension>
{
public:
  using RegionType = typename TImage::RegionType;

  /** `compress`: compress a file written whole (label maps shrink a lot; streamed files cannot be compressed). */
  ImagePieceWriter(TImage * image, const std::string & fileName, bool compress, unsigned int numberOfPieces)
    : m_Image(image)
  {
    const itk::ImageIOBase::Pointer io =
      itk::ImageIOFactory::CreateImageIO(fileName.c_str(), itk::IOFileModeEnum::WriteMode);
    if (io.IsNull())
    {
      itkGenericExceptionMacro("No ITK ImageIO writes \"" << fileName << "\" (unknown extension?).");
    }
    io->SetUseCompression(false);
    m_Streamed = numberOfPieces > 1 && io->CanStreamWrite();
    io->SetUseCompression(compress && !m_Streamed);
    if (m_Streamed && itksys::SystemTools::FileExists(fileName, true))
    {
      // A MetaImage piece is pasted into an existing file on that file's own grid: start from none.
      itksys::SystemTools::RemoveFile(fileName);
    }
    m_Writer->SetImageIO(io);
    m_Writer->SetFileName(fileName);
    m_Writer->SetInput(image);
  }

  void
  Write(const RegionType & piece) override
  {
    if (m_Streamed)
    {
      itk::ImageIORegion ioRegion(TImage::ImageDimension);
      itk::ImageIORegionAdaptor<TImage::ImageDimension>::Convert(
        piece, ioRegion, m_Image->GetLargestPossibleRegion().GetIndex());
      m_Writer->SetIORegion(ioRegion);
      m_Writer->Update();
      return;
    }
    m_Image->SetRequestedRegion(piece);
    m_Image->Update();
    if (piece == m_Image->GetLargestPossibleRegion())
    {
      return; // Written from the pipeline's own output by Finish().
    }
    if (m_Whole.IsNull())
    {
      m_Whole = TImage::New();
      m_Whole->CopyInformation(m_Image);
      m_Whole->SetRegions(m_Image->GetLargestPossibleRegion());
      m_Whole->SetNumberOfComponentsPerPixel(m_Image->GetNumberOfComponentsPerPixel());
      m_Whole->Allocate();
    }
    itk::ImageAlgorithm::Copy(m_Image, m_Whole.GetPointer(), piece, piece);
  }

  void
  Finish() override
  {
    if (m_Streamed)
    {
      return;
    }
    if (m_Whole.IsNotNull())
    {
      m_Writer->SetInput(m_Whole);
    }
    m_Writer->Update();
  }

private:
  TImage *                                       m_Image;
  typename itk::ImageFileWriter<TImage>::Pointer m_Writer{ itk::ImageFileWriter<TImage>::New() };
  typename TImage::Pointer                       m_Whole{};
  bool                                           m_Streamed{ false };
};

template <unsigned int VDimension>
itk::Size<VDimension>
TileSizeFromArgument(const std::vector<int> & values)
{
  itk::Size<VDimension> size;
  size.Fill(0);
  if (!values.empty() && values.size() != 1 && values.size() != VDimension)
  {
    itkGenericExceptionMacro("--tileSize takes one value or " << VDimension << " (one per axis) for this " << VDimension
                                                              << "-D image; got " << values.size() << '.');
  }
  for (unsigned int axis = 0; axis < VDimension && !values.empty(); ++axis)
  {
    const int edge = values[values.size() == 1 ? 0 : axis];
    if (edge < 0)
    {
      itkGenericExceptionMacro("--tileSize must not be negative; got " << edge << '.');
    }
    size[axis] = static_cast<itk::SizeValueType>(edge);
  }
  return size;
}

/** `valueAt(axis)` for each axis. */
template <unsigned int VDimension, typename TValueAt>
itk::Size<VDimension>
PerAxis(TValueAt && valueAt)
{
  itk::Size<VDimension> values;
  for (unsigned int axis = 0; axis < VDimension; ++axis)
  {
    values[axis] = valueAt(axis);
  }
  return values;
}

/** "x,y[,z]": a returned integer-vector parameter as Slicer reads it. */
template <unsigned int VDimension>
std::string
CommaSeparated(const itk::Size<VDimension> & values)
{
  std::string text;
  for (unsigned int axis = 0; axis < VDimension; ++axis)
  {
    text += (axis > 0 ? "," : "") + std::to_string(values[axis]);
  }
  return text;
}

/** The axes given (0: x, 1: y, 2: z) as the filter's flags. */
template <unsigned int VDimension>
itk::FixedArray<bool, VDimension>
FlipAxesFromArgument(const std::vector<int> & axes)
{
  auto flips = itk::FixedArray<bool, VDimension>::Filled(false);
  for (const int axis : axes)
  {
    if (axis < 0 || axis >= static_cast<int>(VDimension))
    {
      itkGenericExceptionMacro("--flipAxes takes axes 0 to " << VDimension - 1 << " for this " << VDimension
                                                             << "-D image; got " << axis << '.');
    }
    flips[axis] = true;
  }
  return flips;
}

itk::UNetModel::PrecisionEnum
PrecisionFromArgument(const std::string & precision)
{
  using PrecisionEnum = itk::UNetModel::PrecisionEnum;
  if (precision == "float16")
  {
    return PrecisionEnum::Float16;
  }
  if (precision == "bfloat16")
  {
    return PrecisionEnum::BFloat16;
  }
  if (precision.empty() || precision == "float32")
  {
    return PrecisionEnum::Float32;
  }
  itkGenericExceptionMacro("--precision takes float32, float16 or bfloat16; got \"" << precision << "\".");
}

void
VerifyNotNegative(const char * flag, int value)
{
  if (value < 0)
  {
    itkGenericExceptionMacro(<< flag << " must not be negative; got " << value << '.');
  }
}

/** The options whose default is the model card's take -1 for "the card's, else the filter's default": Slicer passes
 * every option with its default, so a default that is a value would always override the card. */
constexpr int fromModelCard = -1;

/** Whether `value` of `flag` (an option whose default is the model card's) is the user's, not fromModelCard. */
bool
GivenInsteadOfModelCard(const char * flag, double value)
{
  if (value == fromModelCard)
  {
    return false;
  }
  if (value < 0)
  {
    itkGenericExceptionMacro(<< flag << " must not be negative (-1: the model card's value); got " << value << '.');
  }
  return true;
}

/** The command line, parsed once (GenerateCLP's parser fills locals of the function that runs PARSE_ARGS). */
struct CommandLine
{
  std::string        inputVolume;
  std::string        outputLabelVolume;
  std::string        outputProbabilityVolume;
  std::string        outputCellVolume;
  std::string        outputColorTable;
  std::string        returnParameterFile;
  std::string        modelFile;
  std::vector<float> normalizationMean;
  std::vector<float> normalizationStandardDeviation;
  std::vector<float> standardizeTo;
  bool               noResample{ false };
  std::string        interpolation;
  std::vector<int>   tileSize;
  int                tileOverlap{ fromModelCard };
  std::vector<int>   flipAxes;
  bool               noTestTimeFlips{ false };
  std::string        blending;
  std::string        boundaryCondition;
  double             boundaryConstant{ 0.0 };
  std::string        device;
  std::string        precision;
  int                torchThreads{ 0 };
  int                tilesPerBatch{ 0 };
  double             memoryBudget{ 0.0 };
  bool               noFreeze{ false };
  int                streamPieces{ 1 };
  int                cellClass{ fromModelCard };
  double             seedThreshold{ fromModelCard };
  double             cellThreshold{ fromModelCard };
  /** Whether the options were all parsed: false after --xml, --help and the like, which PARSE_ARGS answers. */
  bool Parsed{ false };
};

/** Parses the command line into `parsed`; the exit status of PARSE_ARGS's own answers (--xml, --help, errors). */
int
ParseCommandLine(int argc, char * argv[], CommandLine & parsed)
{
  PARSE_ARGS;
  parsed.inputVolume = inputVolume;
  parsed.outputLabelVolume = outputLabelVolume;
  parsed.outputProbabilityVolume = outputProbabilityVolume;
  parsed.outputCellVolume = outputCellVolume;
  parsed.outputColorTable = outputColorTable;
  parsed.returnParameterFile = returnParameterFile;
  parsed.modelFile = modelFile;
  parsed.normalizationMean = normalizationMean;
  parsed.normalizationStandardDeviation = normalizationStandardDeviation;
  parsed.standardizeTo = standardizeTo;
  parsed.noResample = noResample;
  parsed.interpolation = interpolation;
  parsed.tileSize = tileSize;
  parsed.tileOverlap = tileOverlap;
  parsed.flipAxes = flipAxes;
  parsed.noTestTimeFlips = noTestTimeFlips;
  parsed.blending = blending;
  parsed.boundaryCondition = boundaryCondition;
  parsed.boundaryConstant = boundaryConstant;
  parsed.device = device;
  parsed.precision = precision;
  parsed.torchThreads = torchThreads;
  parsed.tilesPerBatch = tilesPerBatch;
  parsed.memoryBudget = memoryBudget;
  parsed.noFreeze = noFreeze;
  parsed.streamPieces = streamPieces;
  parsed.cellClass = cellClass;
  parsed.seedThreshold = seedThreshold;
  parsed.cellThreshold = cellThreshold;
  parsed.Parsed = true;
  return EXIT_SUCCESS;
}

/** A class as Slicer shows it. */
struct ClassLook
{
  std::string                 Name;
  std::array<unsigned int, 3> Color;
};

/** The classes' names and colours: the model card's, or "class k" and a palette (black for class 0, then a
 * qualitative set) where it has none. */
std::vector<ClassLook>
ClassLooks(const itk::UNetModel * model)
{
  static const std::array<unsigned int, 3> palette[] = { { 0, 0, 0 },       { 230, 25, 75 },  { 60, 180, 75 },
                                                         { 0, 130, 200 },   { 245, 130, 48 }, { 145, 30, 180 },
                                                         { 70, 240, 240 },  { 240, 50, 230 }, { 210, 245, 60 },
                                                         { 250, 190, 212 }, { 0, 128, 128 },  { 170, 110, 40 } };
  const unsigned int                       classes = model->GetNumberOfClasses();
  const itk::UNetModelCard                 card = model->HasModelCard() ? model->GetModelCard() : itk::UNetModelCard();
  std::vector<ClassLook>                   looks;
  for (unsigned int k = 0; k < classes; ++k)
  {
    looks.push_back({ "class " + std::to_string(k), palette[k % (sizeof(palette) / sizeof(palette[0]))] });
    if (!card.Classes.empty())
    {
      const auto & described = card.Classes[k];
      looks[k].Name = described.Name;
      looks[k].Color = described.Color.value_or(looks[k].Color);
    }
  }
  return looks;
}

/** A 3D Slicer colour table (.ctbl): "index name R G B A" per line, spaces in names as underscores. */
void
WriteColorTable(const std::string & fileName, const std::vector<ClassLook> & looks)
{
  std::ofstream table(fileName);
  table << "# Color table file " << itksys::SystemTools::GetFilenameName(fileName) << "\n# " << looks.size()
        << " values\n";
  for (size_t k = 0; k < looks.size(); ++k)
  {
    std::string name = looks[k].Name;
    std::replace(name.begin(), name.end(), ' ', '_');
    table << k << ' ' << name << ' ' << looks[k].Color[0] << ' ' << looks[k].Color[1] << ' ' << looks[k].Color[2]
          << " 255\n";
  }
  if (!table)
  {
    itkGenericExceptionMacro("Cannot write the colour table \"" << fileName << "\".");
  }
}

/** Segment fields of 3D Slicer's segmentation files (Segment<N>_ID, _Name, _Color, _LabelValue, _Layer, _Extent),
 * which Slicer reads from a NRRD label map it loads as a segmentation: one segment per class but 0 (background). */
template <typename TImage>
void
AddSegmentFields(TImage * labels, const std::vector<ClassLook> & looks)
{
  itk::MetaDataDictionary & dictionary = labels->GetMetaDataDictionary();
  std::string               extent;
  for (unsigned int axis = 0; axis < 3; ++axis)
  {
    const auto size = axis < TImage::ImageDimension ? labels->GetLargestPossibleRegion().GetSize(axis) : 1;
    extent += (axis > 0 ? " 0 " : "0 ") + std::to_string(size - 1);
  }
  for (size_t k = 1; k < looks.size(); ++k)
  {
    const std::string  key = "Segment" + std::to_string(k - 1) + "_";
    std::ostringstream color;
    color << looks[k].Color[0] / 255.0 << ' ' << looks[k].Color[1] / 255.0 << ' ' << looks[k].Color[2] / 255.0;
    itk::EncapsulateMetaData<std::string>(dictionary, key + "ID", "class_" + std::to_string(k));
    itk::EncapsulateMetaData<std::string>(dictionary, key + "Name", looks[k].Name);
    itk::EncapsulateMetaData<std::string>(dictionary, key + "Color", color.str());
    itk::EncapsulateMetaData<std::string>(dictionary, key + "LabelValue", std::to_string(k));
    itk::EncapsulateMetaData<std::string>(dictionary, key + "Layer", "0");
    itk::EncapsulateMetaData<std::string>(dictionary, key + "Extent", extent);
  }
}

/** --arguments.standardizeTo M,S checked: two values, a finite mean and a positive finite standard deviation. */
void
VerifyStandardizeTo(const std::vector<float> & standardizeTo)
{
  if (standardizeTo.size() != 2)
  {
    itkGenericExceptionMacro("--standardizeTo takes two values, a mean and a positive standard deviation; got "
                             << standardizeTo.size() << " value(s).");
  }
  if (!std::isfinite(standardizeTo[0]))
  {
    itkGenericExceptionMacro("--standardizeTo: the mean must be finite; got " << standardizeTo[0] << '.');
  }
  if (!(standardizeTo[1] > 0.0f) || !std::isfinite(standardizeTo[1]))
  {
    itkGenericExceptionMacro("--standardizeTo: the standard deviation must be positive and finite; got "
                             << standardizeTo[1] << '.');
  }
}

/** The input normalisation the user gave, if any: otherwise the segmenter applies the model card's. */
template <typename TSegmenter>
void
SetNormalization(TSegmenter * segmenter, const std::vector<float> & mean, const std::vector<float> & standardDeviation,
                 const std::vector<float> & standardizeTo)
{
  if (!mean.empty() || !standardDeviation.empty())
  {
    segmenter->SetNormalizationMean(std::vector<double>(mean.begin(), mean.end()));
    segmenter->SetNormalizationStandardDeviation(
      std::vector<double>(standardDeviation.begin(), standardDeviation.end()));
  }
  if (!standardizeTo.empty())
  {
    VerifyStandardizeTo(standardizeTo);
    segmenter->StandardizeImageOn();
    segmenter->SetStandardizedMean(standardizeTo[0]);
    segmenter->SetStandardizedStandardDeviation(standardizeTo[1]);
  }
}

/** The separation's settings: the user's where given, else the model card's, else the filter's defaults. */
template <typename TSeparation>
void
ConfigureSeparation(TSeparation * separation, const itk::UNetModel * model, const CommandLine & arguments)
{
  separation->SetParametersFromModel(model);
  if (GivenInsteadOfModelCard("--cellClass", arguments.cellClass))
  {
    separation->SetCellClass(static_cast<unsigned int>(arguments.cellClass));
  }
  if (GivenInsteadOfModelCard("--seedThreshold", arguments.seedThreshold))
  {
    separation->SetSeedThreshold(arguments.seedThreshold);
  }
  if (GivenInsteadOfModelCard("--cellThreshold", arguments.cellThreshold))
  {
    separation->SetCellThreshold(arguments.cellThreshold);
  }
}

/** Slabs of `image` along its last axis, as ImageFileWriter streams: the segmenter grows each to whole tiles and
 * keeps what the next one shares, so every tile runs once whatever the slabs. */
template <unsigned int VDimension>
std::vector<itk::ImageRegion<VDimension>>
SplitIntoPieces(const itk::ImageRegion<VDimension> & image, unsigned int requested)
{
  const auto                                splitter = itk::ImageRegionSplitterSlowDimension::New();
  const unsigned int                        numberOfPieces = splitter->GetNumberOfSplits(image, requested);
  std::vector<itk::ImageRegion<VDimension>> pieces(numberOfPieces, image);
  for (unsigned int p = 0; p < numberOfPieces; ++p)
  {
    splitter->GetSplit(p, numberOfPieces, pieces[p]);
  }
  return pieces;
}

/** What the run returns to Slicer (--returnparameterfile): the probed geometry and what was applied. */
template <typename TSegmenter>
void
WriteReturnedParameters(const std::string & fileName, const TSegmenter * segmenter,
                        const typename TSegmenter::InputImageType::SpacingType & spacing)
{
  constexpr unsigned int VDimension = TSegmenter::ImageDimension;
  const auto &           grid = segmenter->GetTileGrid();
  const auto *           model = segmenter->GetModel();
  std::ofstream          returned(fileName);
  returned << "modelBorder = " << CommaSeparated<VDimension>(grid.GetBorder()) << "\nmodelDownsamplingFactor = "
           << CommaSeparated<VDimension>(
                PerAxis<VDimension>([model](unsigned int axis) { return model->GetDownsamplingFactor(axis); }))
           << "\nnumberOfClasses = " << model->GetNumberOfClasses()
           << "\ntileSizeUsed = " << CommaSeparated<VDimension>(grid.GetTileSize())
           << "\ntileStrideUsed = " << CommaSeparated<VDimension>(grid.GetStride())
           << "\ntilesPerBatchUsed = " << segmenter->GetTilePlan().GetBatchSize()
           << "\nnormalizationApplied = " << segmenter->GetAppliedNormalizationDescription() << "\nspacingApplied = ";
  for (unsigned int axis = 0; axis < VDimension; ++axis)
  {
    returned << (axis > 0 ? "," : "") << spacing[axis];
  }
  returned << "\nestimatedWorkingMemory = " << segmenter->GetEstimatedWorkingMemory() << std::endl;
  if (!returned)
  {
    itkGenericExceptionMacro("Cannot write the return parameter file \"" << fileName << "\".");
  }
}

/** The label map's writer: unsigned char when the classes fit in it, as they nearly always do, with the classes as
 * Slicer segment fields. */
template <typename TClassImage>
std::unique_ptr<PieceWriter<TClassImage::ImageDimension>>
MakeLabelWriter(TClassImage * classes, itk::ProcessObject::Pointer & cast, const std::vector<ClassLook> & looks,
                const std::string & fileName, size_t pieces)
{
  using ByteLabelImageType = itk::Image<unsigned char, TClassImage::ImageDimension>;
  if (looks.size() > 256)
  {
    AddSegmentFields(classes, looks);
    return std::make_unique<ImagePieceWriter<TClassImage>>(classes, fileName, true, pieces);
  }
  auto toBytes = itk::CastImageFilter<TClassImage, ByteLabelImageType>::New();
  toBytes->SetInput(classes);
  AddSegmentFields(toBytes->GetOutput(), looks);
  cast = toBytes.GetPointer();
  return std::make_unique<ImagePieceWriter<ByteLabelImageType>>(toBytes->GetOutput(), fileName, true, pieces);
}

/** The segmenter's settings from the command line; what the user did not give comes from the model card, else the
 * filter's defaults. */
template <typename TSegmenter>
void
ConfigureSegmenter(TSegmenter * segmenter, const CommandLine & arguments)
{
  constexpr unsigned int VDimension = TSegmenter::ImageDimension;
  if (arguments.modelFile.empty())
  {
    itkGenericExceptionMacro("No model file: give the TorchScript network with --model.");
  }
  VerifyNotNegative("--tilesPerBatch", arguments.tilesPerBatch);
  VerifyNotNegative("--torchThreads", arguments.torchThreads);
  segmenter->SetModelFileName(arguments.modelFile);
  segmenter->SetDevice(arguments.device);
  segmenter->SetPrecision(PrecisionFromArgument(arguments.precision));
  segmenter->SetNumberOfTorchThreads(static_cast<unsigned int>(arguments.torchThreads));
  segmenter->SetTileSize(TileSizeFromArgument<VDimension>(arguments.tileSize));
  if (GivenInsteadOfModelCard("--tileOverlap", arguments.tileOverlap))
  {
    segmenter->SetTileOverlap(static_cast<itk::SizeValueType>(arguments.tileOverlap));
  }
  segmenter->SetGaussianBlending(arguments.blending == "gaussian");
  segmenter->SetTilesPerBatch(static_cast<unsigned int>(arguments.tilesPerBatch));
  segmenter->SetMemoryBudget(arguments.memoryBudget);
  if (arguments.boundaryCondition == "mirror")
  {
    segmenter->SetBoundaryConditionToMirror();
  }
  else
  {
    segmenter->SetBoundaryConditionToConstant(arguments.boundaryCondition == "zero" ? 0.0 : arguments.boundaryConstant);
  }
  SetNormalization(
    segmenter, arguments.normalizationMean, arguments.normalizationStandardDeviation, arguments.standardizeTo);
  segmenter->SetFreezeModel(!arguments.noFreeze);
  if (!arguments.flipAxes.empty() || arguments.noTestTimeFlips)
  {
    segmenter->SetTestTimeFlipAxes(
      FlipAxesFromArgument<VDimension>(arguments.noTestTimeFlips ? std::vector<int>() : arguments.flipAxes));
  }
  segmenter->SetGenerateProbabilities(!arguments.outputProbabilityVolume.empty() ||
                                      !arguments.outputCellVolume.empty());
}

/** The image the segmenter reads: `image` itself, or, for a 2-D network given a 3-D image with one axis of a single
 * voxel (3D Slicer's single slice), its plane of the other two axes. The extraction's direction is the identity: the
 * plane's own orientation plays no part in segmenting it, and its results go back onto `image`'s grid voxel for
 * voxel (OnFileGrid). */
template <unsigned int VDimension, typename TFileImage>
const itk::VectorImage<float, VDimension> *
ImageToSegment(TFileImage * image, itk::ProcessObject::Pointer & extraction)
{
  if constexpr (TFileImage::ImageDimension == VDimension)
  {
    return image;
  }
  else
  {
    using PlaneType = itk::VectorImage<float, VDimension>;
    image->UpdateOutputInformation();
    typename TFileImage::RegionType plane = image->GetLargestPossibleRegion();
    for (unsigned int axis = 0; axis < TFileImage::ImageDimension; ++axis)
    {
      plane.SetSize(axis, plane.GetSize(axis) == 1 ? 0 : plane.GetSize(axis));
    }
    auto extract = itk::ExtractImageFilter<TFileImage, PlaneType>::New();
    extract->SetInput(image);
    extract->SetExtractionRegion(plane);
    extract->SetDirectionCollapseToIdentity();
    extraction = extract.GetPointer();
    return extract->GetOutput();
  }
}

/** `result`, segmented on the plane of a single-slice image, on the grid of `fileImage` (its region, origin, spacing
 * and direction): the same voxels in the same order, since the slice's axis has one voxel. `result` itself when the
 * dimensions agree. */
template <typename TImage, typename TFileImage>
auto
OnFileGrid(TImage * result, const TFileImage * fileImage)
{
  constexpr unsigned int VFileDimension = TFileImage::ImageDimension;
  if constexpr (TImage::ImageDimension == VFileDimension)
  {
    return typename TImage::Pointer(result);
  }
  else
  {
    using FileGridImageType =
      std::conditional_t<std::is_same<TImage, itk::VectorImage<float, TImage::ImageDimension>>::value,
                         itk::VectorImage<float, VFileDimension>,
                         itk::Image<typename TImage::PixelType, VFileDimension>>;
    result->Update();
    auto onGrid = FileGridImageType::New();
    onGrid->CopyInformation(fileImage);
    onGrid->SetRegions(fileImage->GetLargestPossibleRegion());
    onGrid->SetNumberOfComponentsPerPixel(result->GetNumberOfComponentsPerPixel());
    onGrid->SetPixelContainer(result->GetPixelContainer());
    onGrid->SetMetaDataDictionary(result->GetMetaDataDictionary());
    return typename FileGridImageType::Pointer(onGrid);
  }
}

/** Sets up the resampling to the model card's spacing unless the card has none or --arguments.noResample is given;
 * returns the spacing the network sees. */
template <typename TResampling>
typename TResampling::InputImageType::SpacingType
ConfigureResampling(TResampling * resampling, const typename TResampling::InputImageType * input, bool resample,
                    const std::string & interpolation)
{
  if (!resample)
  {
    return input->GetSpacing();
  }
  resampling->SetInput(input);
  resampling->SetInterpolation(interpolation == "bspline" ? TResampling::InterpolationEnum::BSpline
                                                          : TResampling::InterpolationEnum::Linear);
  resampling->UpdateOutputInformation();
  return resampling->GetAppliedSpacing();
}

/** One line on standard output: the network, the normalisation and spacing applied, the tiles and the pieces. */
template <typename TSegmenter, typename TSpacing>
void
DescribeRun(const TSegmenter * segmenter, const std::string & modelFile, const TSpacing & spacing, bool resample,
            size_t pieces, const std::string & piecesNote)
{
  constexpr unsigned int VDimension = TSegmenter::ImageDimension;
  const itk::UNetModel * model = segmenter->GetModel();
  const auto &           grid = segmenter->GetTileGrid();
  std::cout << "Model " << modelFile << ": " << model->GetNumberOfInputChannels() << " input channel(s), "
            << model->GetNumberOfClasses() << " classes, border " << grid.GetBorder() << ", downsampling factor "
            << PerAxis<VDimension>([model](unsigned int axis) { return model->GetDownsamplingFactor(axis); })
            << "; normalisation " << segmenter->GetAppliedNormalizationDescription() << "; segmented at spacing "
            << spacing << (resample ? " (resampled)" : "") << "; tiles " << grid.GetTileSize() << " every "
            << grid.GetStride() << " x " << grid.GetNumberOfTiles() << ", " << pieces << " piece(s)" << piecesNote
            << ", estimated working memory " << segmenter->GetEstimatedWorkingMemory() << " MB" << std::endl;
}

/** Runs the pipeline piece by piece (`runPiece` brings a piece up to date and writes it), reporting progress over the
 * pieces and the separation; the separation, when asked for, runs last on the whole probability image. */
template <unsigned int VDimension, typename TSeparation>
void
RunPieces(const std::vector<itk::ImageRegion<VDimension>> &                 pieces,
          const std::function<void(const itk::ImageRegion<VDimension> &)> & runPiece, itk::ProcessObject * labelSource,
          TSeparation * separation, bool separateCells, SlicerProgressReporter & progress)
{
  // The separation counts as one more piece in the progress.
  const double steps = static_cast<double>(pieces.size() + (separateCells ? 1 : 0));
  size_t       piecesDone = 0;
  const auto   report = [&](const itk::ProcessObject * filter) {
    return [&progress, &piecesDone, steps, filter](const itk::EventObject &) {
      progress.Report((static_cast<double>(piecesDone) + filter->GetProgress()) / steps);
    };
  };
  labelSource->AddObserver(itk::ProgressEvent(), report(labelSource));
  separation->AddObserver(itk::ProgressEvent(), report(separation));
  for (const auto & piece : pieces)
  {
    runPiece(piece);
    ++piecesDone;
  }
  if (separateCells)
  {
    // The segmentation ran on the whole image in its one piece: the separation reads its probabilities as they are.
    separation->Update();
    std::cout << "Cells: " << separation->GetNumberOfCells() << std::endl;
  }
}

/** Runs and writes the outputs of a segmentation on the file's own grid, piece by piece: the label writer runs the
 * segmentation for a piece, and the probabilities, then up to date for it too, are written without running it
 * again. */
template <unsigned int VDimension, typename TClassImage, typename TProbabilityImage, typename TSeparation>
void
WriteInPieces(const std::vector<itk::ImageRegion<VDimension>> & pieces, itk::ImageSource<TClassImage> * labelSource,
              TProbabilityImage * probabilities, TSeparation * separation, const std::vector<ClassLook> & looks,
              const CommandLine & arguments, SlicerProgressReporter & progress)
{
  itk::ProcessObject::Pointer cast;
  auto                        labelWriter =
    MakeLabelWriter<TClassImage>(labelSource->GetOutput(), cast, looks, arguments.outputLabelVolume, pieces.size());
  std::unique_ptr<PieceWriter<VDimension>> probabilityWriter;
  if (!arguments.outputProbabilityVolume.empty())
  {
    // Probabilities compress poorly and slowly: written uncompressed.
    probabilityWriter = std::make_unique<ImagePieceWriter<TProbabilityImage>>(
      probabilities, arguments.outputProbabilityVolume, false, pieces.size());
  }
  const auto runPiece = [&](const itk::ImageRegion<VDimension> & piece) {
    labelWriter->Write(piece);
    if (probabilityWriter)
    {
      probabilityWriter->Write(piece);
    }
  };
  RunPieces<VDimension>(pieces, runPiece, labelSource, separation, !arguments.outputCellVolume.empty(), progress);
  labelWriter->Finish();
  if (probabilityWriter)
  {
    probabilityWriter->Finish();
  }
  if (!arguments.outputCellVolume.empty())
  {
    itk::WriteImage(separation->GetOutput(), arguments.outputCellVolume, true);
  }
}

/** Runs a single slice's segmentation whole and writes its outputs on the grid of the file it came from. */
template <typename TClassImage, typename TProbabilityImage, typename TSeparation, typename TFileImage>
void
WriteOnFileGrid(itk::ImageSource<TClassImage> * labelSource, TProbabilityImage * probabilities,
                TSeparation * separation, const std::vector<ClassLook> & looks, const TFileImage * fileImage,
                const CommandLine & arguments, SlicerProgressReporter & progress)
{
  constexpr unsigned int VDimension = TClassImage::ImageDimension;
  const auto             runPiece = [labelSource](const itk::ImageRegion<VDimension> & piece) {
    labelSource->GetOutput()->SetRequestedRegion(piece);
    labelSource->GetOutput()->Update();
  };
  RunPieces<VDimension>({ labelSource->GetOutput()->GetLargestPossibleRegion() },
                        runPiece,
                        labelSource,
                        separation,
                        !arguments.outputCellVolume.empty(),
                        progress);
  const auto                  labels = OnFileGrid(labelSource->GetOutput(), fileImage);
  itk::ProcessObject::Pointer cast;
  auto labelWriter = MakeLabelWriter(labels.GetPointer(), cast, looks, arguments.outputLabelVolume, 1);
  labelWriter->Write(labels->GetLargestPossibleRegion());
  labelWriter->Finish();
  if (!arguments.outputProbabilityVolume.empty())
  {
    itk::WriteImage(OnFileGrid(probabilities, fileImage), arguments.outputProbabilityVolume, false);
  }
  if (!arguments.outputCellVolume.empty())
  {
    itk::WriteImage(OnFileGrid(separation->GetOutput(), fileImage), arguments.outputCellVolume, true);
  }
}

/** The cell separation of `probabilities`, configured (ConfigureSeparation); with --cells its settings are checked
 * here, so that bad ones fail before the segmentation rather than after it. */
template <unsigned int VDimension, typename TProbabilityImage>
auto
MakeSeparation(TProbabilityImage * probabilities, const itk::UNetModel * model, const CommandLine & arguments)
{
  auto separation = itk::UNetCellSeparationImageFilter<TProbabilityImage, itk::Image<unsigned int, VDimension>>::New();
  ConfigureSeparation(separation.GetPointer(), model, arguments);
  if (!arguments.outputCellVolume.empty())
  {
    separation->SetInput(probabilities);
    separation->UpdateOutputInformation();
  }
  return separation;
}

void
VerifyStreamPieces(int streamPieces)
{
  if (streamPieces < 1)
  {
    itkGenericExceptionMacro("--streamPieces must be at least 1; got " << streamPieces << '.');
  }
}

/** The summary's note when the image is segmented whole (`wholeBecause` says why) though more pieces were asked for. */
std::string
PiecesNotUsed(int streamPieces, const char * wholeBecause)
{
  if (wholeBecause == nullptr || streamPieces <= 1)
  {
    return "";
  }
  return " (--streamPieces " + std::to_string(streamPieces) + " not used: " + wholeBecause + ")";
}

/** The colour table and the returned parameters, where asked for. */
template <typename TSegmenter, typename TSpacing>
void
WriteDescriptions(const CommandLine & arguments, const std::vector<ClassLook> & looks, const TSegmenter * segmenter,
                  const TSpacing & spacing)
{
  if (!arguments.outputColorTable.empty())
  {
    WriteColorTable(arguments.outputColorTable, looks);
  }
  if (!arguments.returnParameterFile.empty())
  {
    WriteReturnedParameters(arguments.returnParameterFile, segmenter, spacing);
  }
}

/** Segments the file `arguments.inputVolume`, of VFileDimension, with a VDimension network: the same dimension, or a
 * 2-D network on a single-slice 3-D image. `loadedModel`: the model already loaded, if any. */
template <unsigned int VDimension, unsigned int VFileDimension>
int
Segment(const CommandLine & arguments, itk::UNetModel * loadedModel)
{
  using FileImageType = itk::VectorImage<float, VFileDimension>;
  // Holds up to 65536 classes; written as unsigned char when the classes fit in it.
  using ClassImageType = itk::Image<unsigned short, VDimension>;
  using ResamplingType =
    itk::UNetResamplingSegmentationImageFilter<itk::VectorImage<float, VDimension>, ClassImageType>;
  using ProbabilityImageType = typename ResamplingType::SegmenterType::ProbabilityImageType;
  constexpr bool singleSlice = VDimension != VFileDimension;
  VerifyStreamPieces(arguments.streamPieces);
  SlicerProgressReporter progress("UNetSegmentation",
                                  "Segmenting " + arguments.inputVolume + " with " + arguments.modelFile);
  auto                   reader = itk::ImageFileReader<FileImageType>::New();
  reader->SetFileName(arguments.inputVolume);
  itk::ProcessObject::Pointer extraction;
  const auto *                input = ImageToSegment<VDimension>(reader->GetOutput(), extraction);
  auto                        resampling = ResamplingType::New();
  auto *                      segmenter = resampling->GetSegmenter();
  segmenter->SetInput(input);
  if (loadedModel != nullptr)
  {
    segmenter->SetModel(loadedModel);
  }
  ConfigureSegmenter(segmenter, arguments);
  // Loads and probes the network, reads its model card, and lays out the tiles.
  segmenter->UpdateOutputInformation();
  const bool resample = !arguments.noResample && !segmenter->GetModel()->GetTrainedSpacing().empty();
  const auto spacing = ConfigureResampling(resampling.GetPointer(), input, resample, arguments.interpolation);
  itk::ImageSource<ClassImageType> * labelSource =
    resample ? static_cast<itk::ImageSource<ClassImageType> *>(resampling.GetPointer()) : segmenter;
  ProbabilityImageType * probabilities =
    resample ? resampling->GetProbabilityOutput() : segmenter->GetProbabilityOutput();
  const bool separateCells = !arguments.outputCellVolume.empty();
  const auto separation = MakeSeparation<VDimension>(probabilities, segmenter->GetModel(), arguments);
  // Resampled (whole), with the cells (a cell may reach across any piece) or a single slice: one piece.
  const char * wholeBecause = resample        ? "the image is resampled whole"
                              : separateCells ? "--cells separates the whole image"
                              : singleSlice   ? "a single slice"
                                              : nullptr;
  const auto   pieces = SplitIntoPieces<VDimension>(
    input->GetLargestPossibleRegion(), wholeBecause ? 1u : static_cast<unsigned int>(arguments.streamPieces));
  const std::string piecesNote = PiecesNotUsed(arguments.streamPieces, wholeBecause);
  DescribeRun(segmenter, arguments.modelFile, spacing, resample, pieces.size(), piecesNote);
  const std::vector<ClassLook> looks = ClassLooks(segmenter->GetModel());
  if constexpr (singleSlice)
  {
    WriteOnFileGrid(
      labelSource, probabilities, separation.GetPointer(), looks, reader->GetOutput(), arguments, progress);
  }
  else
  {
    WriteInPieces<VDimension>(pieces, labelSource, probabilities, separation.GetPointer(), looks, arguments, progress);
  }
  WriteDescriptions(arguments, looks, segmenter, spacing);
  progress.End();
  return EXIT_SUCCESS;
}

/** For a 3-D image `io` describes with exactly one axis of a single voxel (as 3D Slicer hands a CLI module a 2-D
 * image): the model, loaded, if it is a 2-D network, which then segments the plane of the other two axes (and serves
 * the segmenter without loading again); null otherwise. */
itk::UNetModel::Pointer
Loaded2DModelForASingleSlice(const itk::ImageIOBase & io, const CommandLine & arguments)
{
  unsigned int singleVoxelAxes = 0;
  for (unsigned int axis = 0; axis < io.GetNumberOfDimensions(); ++axis)
  {
    singleVoxelAxes += io.GetDimensions(axis) == 1 ? 1 : 0;
  }
  if (singleVoxelAxes != 1 || arguments.modelFile.empty())
  {
    return nullptr;
  }
  auto model = itk::UNetModel::New();
  model->SetFileName(arguments.modelFile);
  model->SetDevice(arguments.device);
  model->SetPrecision(PrecisionFromArgument(arguments.precision));
  model->SetFreeze(!arguments.noFreeze);
  model->Load();
  return model->GetGeometry().Dimension == 2 ? model : nullptr;
}

/** LibTorch's activations are blocks large enough for glibc to serve with mmap and hand back to the kernel when
 * freed, so that every layer of every tile faults its memory in afresh; and a thread's own malloc arena unmaps each of
 * its heaps once it is empty, whatever the trim threshold, so that forward passes side by side on threads of their own
 * fault theirs in again every batch. A program, unlike a library, may keep them all in the main heap for the whole
 * process (docs/cpp.md, "Speed on the CPU"); one arena, set before any thread starts. GLIBC_TUNABLES, when set, is
 * the user's choice. */
void
KeepLargeBlocksInHeap()
{
#if defined(__GLIBC__)
  if (std::getenv("GLIBC_TUNABLES") == nullptr)
  {
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
    mallopt(M_ARENA_MAX, 1);
  }
#endif
}

} // namespace

int
main(int argc, char * argv[])
{
  CommandLine arguments;
  const int   parsing = ParseCommandLine(argc, argv, arguments);
  if (!arguments.Parsed)
  {
    return parsing;
  }
  KeepLargeBlocksInHeap();
  try
  {
    // The image's dimension decides which pipeline runs; its pixels are read as float, all components.
    const itk::ImageIOBase::Pointer io =
      itk::ImageIOFactory::CreateImageIO(arguments.inputVolume.c_str(), itk::IOFileModeEnum::ReadMode);
    if (io.IsNull())
    {
      itkGenericExceptionMacro("Cannot read \"" << arguments.inputVolume
                                                << "\": it does not exist or no ITK ImageIO reads its format.");
    }
    io->SetFileName(arguments.inputVolume);
    io->ReadImageInformation();
    switch (io->GetNumberOfDimensions())
    {
      case 2:
        return Segment<2, 2>(arguments, nullptr);
      case 3: {
        const itk::UNetModel::Pointer planeModel = Loaded2DModelForASingleSlice(*io, arguments);
        return planeModel ? Segment<2, 3>(arguments, planeModel) : Segment<3, 3>(arguments, nullptr);
      }
      default:
        itkGenericExceptionMacro("\"" << arguments.inputVolume << "\" is " << io->GetNumberOfDimensions()
                                      << "-D; UNetSegmentation segments 2-D and 3-D images.");
    }
  }
  catch (const itk::ExceptionObject & error)
  {
    std::cerr << "UNetSegmentation: " << error.GetDescription() << std::endl;
  }
  catch (const std::exception & error)
  {
    std::cerr << "UNetSegmentation: " << error.what() << std::endl;
  }
  return EXIT_FAILURE;
}
