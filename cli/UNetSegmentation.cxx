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
#include "itkStatisticsImageFilter.h"
#include "itkUNetCellSeparationImageFilter.h"
#include "itkUNetSegmentationImageFilter.h"
#include "itkVectorImage.h"
#include "itkVectorIndexSelectionCastImageFilter.h"
#include "itksys/SystemTools.hxx"

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

/** --standardizeTo M,S: the segmenter's per-channel normalisation (value - mean') / sd' that maps each channel of its
 * input linearly to mean M and standard deviation S over the whole image (ITK's StatisticsImageFilter: sample
 * standard deviation) and then applies the normalisation (value - mean) / sd it has. Called after the segmenter's
 * output information, which has checked that normalisation's number of values. */
template <typename TSegmenter>
void
StandardizeNormalization(TSegmenter * segmenter, const std::vector<float> & standardizeTo)
{
  using ImageType = typename TSegmenter::InputImageType;
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
  const ImageType *   image = segmenter->GetInput();
  const unsigned int  channels = image->GetNumberOfComponentsPerPixel();
  std::vector<double> means(channels);
  std::vector<double> standardDeviations(channels);
  using ChannelImageType = itk::Image<float, ImageType::ImageDimension>;
  for (unsigned int c = 0; c < channels; ++c)
  {
    auto channel = itk::VectorIndexSelectionCastImageFilter<ImageType, ChannelImageType>::New();
    channel->SetInput(image);
    channel->SetIndex(c);
    auto statistics = itk::StatisticsImageFilter<ChannelImageType>::New();
    statistics->SetInput(channel->GetOutput());
    statistics->Update();
    means[c] = statistics->GetMean();
    standardDeviations[c] = statistics->GetSigma();
    if (!(standardDeviations[c] > 0.0))
    {
      itkGenericExceptionMacro("--standardizeTo: channel " << c << " of the image is constant (" << means[c]
                                                           << "); it has no standard deviation to standardise.");
    }
  }
  segmenter->SetNormalization(
    segmenter->GetNormalization().AfterStandardizing(means, standardDeviations, standardizeTo[0], standardizeTo[1]));
}

template <unsigned int VDimension>
int
Segment(int argc, char * argv[])
{
  PARSE_ARGS;
  using InputImageType = itk::VectorImage<float, VDimension>;
  // Holds up to 65536 classes; written as unsigned char when the classes fit in it, as they nearly always do.
  using ClassImageType = itk::Image<unsigned short, VDimension>;
  using ByteLabelImageType = itk::Image<unsigned char, VDimension>;
  using SegmenterType = itk::UNetSegmentationImageFilter<InputImageType, ClassImageType>;

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

  auto segmenter = SegmenterType::New();
  segmenter->SetInput(reader->GetOutput());
  segmenter->SetModelFileName(modelFile);
  segmenter->SetDevice(device);
  segmenter->SetNumberOfTorchThreads(static_cast<unsigned int>(torchThreads));
  segmenter->SetTileSize(TileSizeFromArgument<VDimension>(tileSize));
  segmenter->SetTileOverlap(static_cast<itk::SizeValueType>(tileOverlap));
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
  segmenter->SetNormalizationMean(std::vector<double>(normalizationMean.begin(), normalizationMean.end()));
  segmenter->SetNormalizationStandardDeviation(
    std::vector<double>(normalizationStandardDeviation.begin(), normalizationStandardDeviation.end()));

  segmenter->SetFreezeModel(!noFreeze);
  segmenter->SetTestTimeFlipAxes(FlipAxesFromArgument<VDimension>(flipAxes));
  const bool separateCells = !outputCellVolume.empty();
  segmenter->SetGenerateProbabilities(!outputProbabilityVolume.empty() || separateCells);

  // Loads and probes the network and lays out the tiles.
  segmenter->UpdateOutputInformation();
  if (!standardizeTo.empty())
  {
    StandardizeNormalization(segmenter.GetPointer(), standardizeTo);
  }
  const itk::UNetModel * model = segmenter->GetModel();
  const auto &           grid = segmenter->GetTileGrid();
  const unsigned int     classes = model->GetNumberOfClasses();
  // Slabs along the last axis, as ImageFileWriter streams. The segmenter grows each to whole tiles and keeps what
  // the next slab shares, so every tile runs once whatever the slabs.
  const auto splitter = itk::ImageRegionSplitterSlowDimension::New();
  const auto image = grid.GetImageRegion();
  // The cells need the whole probability image (a cell may reach across any piece): one piece then.
  const unsigned int numberOfPieces =
    splitter->GetNumberOfSplits(image, separateCells ? 1u : static_cast<unsigned int>(streamPieces));
  std::vector<itk::ImageRegion<VDimension>> pieces(numberOfPieces, image);
  for (unsigned int p = 0; p < numberOfPieces; ++p)
  {
    splitter->GetSplit(p, numberOfPieces, pieces[p]);
  }
  std::cout << "Model " << modelFile << ": " << model->GetNumberOfInputChannels() << " input channel(s), " << classes
            << " classes, border " << grid.GetBorder() << ", downsampling factor "
            << PerAxis<VDimension>([model](unsigned int axis) { return model->GetDownsamplingFactor(axis); })
            << "; tiles " << grid.GetTileSize() << " every " << grid.GetStride() << " x " << grid.GetNumberOfTiles()
            << ", " << pieces.size() << " piece(s), estimated working memory " << segmenter->GetEstimatedWorkingMemory()
            << " MB" << std::endl;

  std::unique_ptr<PieceWriter<VDimension>> labelWriter;
  auto                                     toBytes = itk::CastImageFilter<ClassImageType, ByteLabelImageType>::New();
  if (classes <= 256)
  {
    toBytes->SetInput(segmenter->GetOutput());
    labelWriter = std::make_unique<ImagePieceWriter<ByteLabelImageType>>(
      toBytes->GetOutput(), outputLabelVolume, true, pieces.size());
  }
  else
  {
    labelWriter = std::make_unique<ImagePieceWriter<ClassImageType>>(
      segmenter->GetOutput(), outputLabelVolume, true, pieces.size());
  }
  std::unique_ptr<PieceWriter<VDimension>> probabilityWriter;
  if (!outputProbabilityVolume.empty())
  {
    // Probabilities compress poorly and slowly: written uncompressed.
    probabilityWriter = std::make_unique<ImagePieceWriter<typename SegmenterType::ProbabilityImageType>>(
      segmenter->GetProbabilityOutput(), outputProbabilityVolume, false, pieces.size());
  }

  using CellImageType = itk::Image<unsigned int, VDimension>;
  using SeparationType =
    itk::UNetCellSeparationImageFilter<typename SegmenterType::ProbabilityImageType, CellImageType>;
  auto separation = SeparationType::New();
  separation->SetCellClass(static_cast<unsigned int>(cellClass));
  separation->SetSeedThreshold(seedThreshold);
  separation->SetCellThreshold(cellThreshold);
  if (separateCells)
  {
    // Bad separation settings fail here, before the segmentation rather than after it.
    separation->SetInput(segmenter->GetProbabilityOutput());
    separation->UpdateOutputInformation();
  }

  // The separation counts as one more piece in the progress.
  const double steps = static_cast<double>(pieces.size() + (separateCells ? 1 : 0));
  size_t       piecesDone = 0;
  segmenter->AddObserver(itk::ProgressEvent(), [&](const itk::EventObject &) {
    progress.Report((static_cast<double>(piecesDone) + segmenter->GetProgress()) / steps);
  });
  separation->AddObserver(itk::ProgressEvent(), [&](const itk::EventObject &) {
    progress.Report((static_cast<double>(piecesDone) + separation->GetProgress()) / steps);
  });
  for (const auto & piece : pieces)
  {
    // The label writer runs the segmenter for the piece; the probabilities are then up to date for it too, and are
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
    // The segmenter ran on the whole image in its one piece: the separation reads its probabilities as they are.
    separation->Update();
    std::cout << "Cells: " << separation->GetNumberOfCells() << std::endl;
    itk::WriteImage(separation->GetOutput(), outputCellVolume, true);
  }

  if (!returnParameterFile.empty())
  {
    std::ofstream returned(returnParameterFile);
    returned << "modelBorder = " << CommaSeparated<VDimension>(grid.GetBorder()) << "\nmodelDownsamplingFactor = "
             << CommaSeparated<VDimension>(
                  PerAxis<VDimension>([model](unsigned int axis) { return model->GetDownsamplingFactor(axis); }))
             << "\nnumberOfClasses = " << classes
             << "\ntileSizeUsed = " << CommaSeparated<VDimension>(grid.GetTileSize())
             << "\ntileStrideUsed = " << CommaSeparated<VDimension>(grid.GetStride())
             << "\nestimatedWorkingMemory = " << segmenter->GetEstimatedWorkingMemory() << std::endl;
    if (!returned)
    {
      itkGenericExceptionMacro("Cannot write the return parameter file \"" << returnParameterFile << "\".");
    }
  }
  progress.End();
  return EXIT_SUCCESS;
}

/** LibTorch's activations are blocks large enough for glibc to serve with mmap and hand back to the kernel when
 * freed, so that every layer of every tile faults its memory in afresh. A program, unlike a library, may keep them
 * in the heap for the whole process (README, "Speed on CPU"). GLIBC_TUNABLES, when set, is the user's choice. */
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
