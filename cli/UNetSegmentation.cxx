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
#include <iostream>
#include <limits>
#include <memory>
#include <sstream>
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

void
VerifyNotNegative(const char * flag, int value)
{
  if (value < 0)
  {
    itkGenericExceptionMacro(<< flag << " must not be negative; got " << value << '.');
  }
}

/** Whether `flag` is on the command line: SlicerExecutionModel's parser gives a missing option its default, and the
 * model card's settings apply where the user gave none. */
bool
Given(int argc, char * argv[], const std::string & flag)
{
  for (int a = 1; a < argc; ++a)
  {
    const std::string argument = argv[a];
    if (argument == flag || argument.rfind(flag + "=", 0) == 0)
    {
      return true;
    }
  }
  return false;
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

/** --standardizeTo M,S checked: two values, a finite mean and a positive finite standard deviation. */
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
ConfigureSeparation(TSeparation * separation, const itk::UNetModel * model, int argc, char * argv[], int cellClass,
                    double seedThreshold, double cellThreshold)
{
  separation->SetParametersFromModel(model);
  if (Given(argc, argv, "--cellClass"))
  {
    separation->SetCellClass(static_cast<unsigned int>(cellClass));
  }
  if (Given(argc, argv, "--seedThreshold"))
  {
    separation->SetSeedThreshold(seedThreshold);
  }
  if (Given(argc, argv, "--cellThreshold"))
  {
    separation->SetCellThreshold(cellThreshold);
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

template <unsigned int VDimension>
int
Segment(int argc, char * argv[])
{
  PARSE_ARGS;
  using InputImageType = itk::VectorImage<float, VDimension>;
  // Holds up to 65536 classes; written as unsigned char when the classes fit in it.
  using ClassImageType = itk::Image<unsigned short, VDimension>;
  using ResamplingType = itk::UNetResamplingSegmentationImageFilter<InputImageType, ClassImageType>;
  using SegmenterType = typename ResamplingType::SegmenterType;
  using ProbabilityImageType = typename SegmenterType::ProbabilityImageType;

  if (modelFile.empty())
  {
    itkGenericExceptionMacro("No model file: give the TorchScript network with --model.");
  }
  VerifyNotNegative("--tileOverlap", tileOverlap);
  VerifyNotNegative("--tilesPerBatch", tilesPerBatch);
  VerifyNotNegative("--torchThreads", torchThreads);
  if (streamPieces < 1)
  {
    itkGenericExceptionMacro("--streamPieces must be at least 1; got " << streamPieces << '.');
  }
  SlicerProgressReporter progress("UNetSegmentation", "Segmenting " + inputVolume + " with " + modelFile);

  auto reader = itk::ImageFileReader<InputImageType>::New();
  reader->SetFileName(inputVolume);
  auto            resampling = ResamplingType::New();
  SegmenterType * segmenter = resampling->GetSegmenter();
  segmenter->SetInput(reader->GetOutput());
  segmenter->SetModelFileName(modelFile);
  segmenter->SetDevice(device);
  segmenter->SetNumberOfTorchThreads(static_cast<unsigned int>(torchThreads));
  segmenter->SetTileSize(TileSizeFromArgument<VDimension>(tileSize));
  if (Given(argc, argv, "--tileOverlap"))
  {
    segmenter->SetTileOverlap(static_cast<itk::SizeValueType>(tileOverlap));
  }
  segmenter->SetGaussianBlending(blending == "gaussian");
  segmenter->SetTilesPerBatch(static_cast<unsigned int>(tilesPerBatch));
  segmenter->SetMemoryBudget(memoryBudget);
  if (boundaryCondition == "mirror")
  {
    segmenter->SetBoundaryConditionToMirror();
  }
  else
  {
    segmenter->SetBoundaryConditionToConstant(boundaryCondition == "zero" ? 0.0 : boundaryConstant);
  }
  SetNormalization(segmenter, normalizationMean, normalizationStandardDeviation, standardizeTo);
  segmenter->SetFreezeModel(!noFreeze);
  if (!flipAxes.empty() || noTestTimeFlips)
  {
    segmenter->SetTestTimeFlipAxes(FlipAxesFromArgument<VDimension>(noTestTimeFlips ? std::vector<int>() : flipAxes));
  }
  const bool separateCells = !outputCellVolume.empty();
  segmenter->SetGenerateProbabilities(!outputProbabilityVolume.empty() || separateCells);

  // Loads and probes the network, reads its model card, and lays out the tiles.
  segmenter->UpdateOutputInformation();
  const itk::UNetModel *             model = segmenter->GetModel();
  const bool                         resample = !noResample && !model->GetTrainedSpacing().empty();
  itk::ImageSource<ClassImageType> * labelSource = segmenter;
  ProbabilityImageType *             probabilities = segmenter->GetProbabilityOutput();
  auto                               spacing = reader->GetOutput()->GetSpacing();
  if (resample)
  {
    resampling->SetInput(reader->GetOutput());
    resampling->SetInterpolation(interpolation == "bspline" ? ResamplingType::InterpolationEnum::BSpline
                                                            : ResamplingType::InterpolationEnum::Linear);
    resampling->UpdateOutputInformation();
    spacing = resampling->GetAppliedSpacing();
    labelSource = resampling;
    probabilities = resampling->GetProbabilityOutput();
  }
  const auto & grid = segmenter->GetTileGrid();
  // Resampled (whole), or with the cells (a cell may reach across any piece): one piece.
  const auto pieces =
    SplitIntoPieces<VDimension>(reader->GetOutput()->GetLargestPossibleRegion(),
                                resample || separateCells ? 1u : static_cast<unsigned int>(streamPieces));
  std::cout << "Model " << modelFile << ": " << model->GetNumberOfInputChannels() << " input channel(s), "
            << model->GetNumberOfClasses() << " classes, border " << grid.GetBorder() << ", downsampling factor "
            << PerAxis<VDimension>([model](unsigned int axis) { return model->GetDownsamplingFactor(axis); })
            << "; normalisation " << segmenter->GetAppliedNormalizationDescription() << "; segmented at spacing "
            << spacing << (resample ? " (resampled)" : "") << "; tiles " << grid.GetTileSize() << " every "
            << grid.GetStride() << " x " << grid.GetNumberOfTiles() << ", " << pieces.size()
            << " piece(s), estimated working memory " << segmenter->GetEstimatedWorkingMemory() << " MB" << std::endl;

  const std::vector<ClassLook> looks = ClassLooks(model);
  itk::ProcessObject::Pointer  cast;
  auto                         labelWriter =
    MakeLabelWriter<ClassImageType>(labelSource->GetOutput(), cast, looks, outputLabelVolume, pieces.size());
  std::unique_ptr<PieceWriter<VDimension>> probabilityWriter;
  if (!outputProbabilityVolume.empty())
  {
    // Probabilities compress poorly and slowly: written uncompressed.
    probabilityWriter = std::make_unique<ImagePieceWriter<ProbabilityImageType>>(
      probabilities, outputProbabilityVolume, false, pieces.size());
  }
  auto separation =
    itk::UNetCellSeparationImageFilter<ProbabilityImageType, itk::Image<unsigned int, VDimension>>::New();
  ConfigureSeparation(separation.GetPointer(), model, argc, argv, cellClass, seedThreshold, cellThreshold);
  if (separateCells)
  {
    // Bad separation settings fail here, before the segmentation rather than after it.
    separation->SetInput(probabilities);
    separation->UpdateOutputInformation();
  }

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
    // The label writer runs the segmentation for the piece; the probabilities are then up to date for it too, and are
    // written without running it again.
    labelWriter->Write(piece);
    if (probabilityWriter)
    {
      probabilityWriter->Write(piece);
    }
    ++piecesDone;
  }
  labelWriter->Finish();
  if (probabilityWriter)
  {
    probabilityWriter->Finish();
  }
  if (separateCells)
  {
    // The segmentation ran on the whole image in its one piece: the separation reads its probabilities as they are.
    separation->Update();
    std::cout << "Cells: " << separation->GetNumberOfCells() << std::endl;
    itk::WriteImage(separation->GetOutput(), outputCellVolume, true);
  }
  if (!outputColorTable.empty())
  {
    WriteColorTable(outputColorTable, looks);
  }
  if (!returnParameterFile.empty())
  {
    WriteReturnedParameters(returnParameterFile, segmenter, spacing);
  }
  progress.End();
  return EXIT_SUCCESS;
}

/** LibTorch's activations are blocks large enough for glibc to serve with mmap and hand back to the kernel when
 * freed, so that every layer of every tile faults its memory in afresh. A program, unlike a library, may keep them
 * in the heap for the whole process (docs/cpp.md, "Speed on the CPU"). GLIBC_TUNABLES, when set, is the user's
 * choice. */
void
KeepLargeBlocksInHeap()
{
#if defined(__GLIBC__)
  if (std::getenv("GLIBC_TUNABLES") == nullptr)
  {
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
  }
#endif
}

} // namespace

int
main(int argc, char * argv[])
{
  PARSE_ARGS;
  KeepLargeBlocksInHeap();
  try
  {
    // The image's dimension decides which pipeline runs; its pixels are read as float, all components.
    const itk::ImageIOBase::Pointer io =
      itk::ImageIOFactory::CreateImageIO(inputVolume.c_str(), itk::IOFileModeEnum::ReadMode);
    if (io.IsNull())
    {
      itkGenericExceptionMacro("Cannot read \"" << inputVolume
                                                << "\": it does not exist or no ITK ImageIO reads its format.");
    }
    io->SetFileName(inputVolume);
    io->ReadImageInformation();
    switch (io->GetNumberOfDimensions())
    {
      case 2:
        return Segment<2>(argc, argv);
      case 3:
        return Segment<3>(argc, argv);
      default:
        itkGenericExceptionMacro("\"" << inputVolume << "\" is " << io->GetNumberOfDimensions()
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
