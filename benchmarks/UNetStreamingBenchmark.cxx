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

// Streams a float MetaImage volume through ImageFileReader -> UNetSegmentationImageFilter -> ImageFileWriter and
// prints the wall time and the process's peak resident memory. One case per process, so that peaks do not mix
// (benchmarks/streaming_benchmark.sh runs the cases).
//
//   UNetStreamingBenchmark generate volume.mha x y z
//   UNetStreamingBenchmark segment model.pt volume.mha labels.mha pieces [memory budget MB = 512] [torch threads = 2]

#include "itkUNetSegmentationImageFilter.h"

#include "itkImageFileReader.h"
#include "itkImageFileWriter.h"
#include "itkImageRegionIteratorWithIndex.h"
#include "itkImageSource.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>

namespace
{
using VolumeType = itk::Image<float, 3>;
using FilterType = itk::UNetSegmentationImageFilter<VolumeType>;

/** A smooth test volume, computed for whatever region is requested, so that a streaming writer never holds more
 * than a piece of it. */
class VolumeSource : public itk::ImageSource<VolumeType>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(VolumeSource);
  using Self = VolumeSource;
  using Superclass = itk::ImageSource<VolumeType>;
  using Pointer = itk::SmartPointer<Self>;
  itkNewMacro(Self);
  itkTypeMacro(VolumeSource, ImageSource);
  itkSetMacro(Size, VolumeType::SizeType);

protected:
  VolumeSource() = default;
  void
  GenerateOutputInformation() override
  {
    this->GetOutput()->SetLargestPossibleRegion(VolumeType::RegionType(m_Size));
  }
  void
  GenerateData() override
  {
    VolumeType * output = this->GetOutput();
    this->AllocateOutputs();
    for (itk::ImageRegionIteratorWithIndex<VolumeType> it(output, output->GetRequestedRegion()); !it.IsAtEnd(); ++it)
    {
      const auto & i = it.GetIndex();
      it.Set(static_cast<float>(std::sin(0.05 * i[0]) * std::cos(0.07 * i[1]) + std::sin(0.11 * i[2] + 0.03 * i[0])));
    }
  }

private:
  VolumeType::SizeType m_Size{ { 0, 0, 0 } };
};

double
PeakResidentMegabytes()
{
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0; // kilobytes on Linux
}
/** The resident set now, in megabytes (/proc/self/statm), or -1 where it cannot be read. */
double
ResidentMegabytes()
{
  std::ifstream statm("/proc/self/statm");
  double        pages = 0;
  double        resident = -1;
  if (!(statm >> pages >> resident))
  {
    return -1.0;
  }
  return resident * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}
} // namespace

int
main(int argc, char * argv[])
{
  const std::string mode = argc > 1 ? argv[1] : "";
  try
  {
    if (mode == "generate" && argc == 6)
    {
      auto source = VolumeSource::New();
      source->SetSize({ { std::stoul(argv[3]), std::stoul(argv[4]), std::stoul(argv[5]) } });
      auto writer = itk::ImageFileWriter<VolumeType>::New();
      writer->SetInput(source->GetOutput());
      writer->SetFileName(argv[2]);
      writer->SetNumberOfStreamDivisions(64);
      writer->Update();
      return EXIT_SUCCESS;
    }
    if (mode == "segment" && argc >= 6)
    {
      const auto start = std::chrono::steady_clock::now();
      auto       reader = itk::ImageFileReader<VolumeType>::New();
      reader->SetFileName(argv[3]);
      auto filter = FilterType::New();
      filter->SetInput(reader->GetOutput());
      filter->SetModelFileName(argv[2]);
      filter->SetMemoryBudget(argc > 6 ? std::stod(argv[6]) : 512.0);
      filter->SetNumberOfTorchThreads(argc > 7 ? std::stoul(argv[7]) : 2);
      filter->GenerateProbabilitiesOff();
      unsigned int tilesRun = 0;
      unsigned int executions = 0;
      filter->AddObserver(itk::ProgressEvent(), [&](const itk::EventObject &) {
        tilesRun += filter->GetProgress() > 0.0f && filter->GetProgress() < 1.0f;
      });
      filter->AddObserver(itk::StartEvent(), [&](const itk::EventObject &) { ++executions; });
      // Loads and probes the network: what the process holds before any tile runs (libraries, model, probing's
      // leftovers in the heap), so that the peak can be compared with the filter's working-memory estimate.
      filter->UpdateOutputInformation();
      const double residentBeforeTiles = ResidentMegabytes();
      auto         writer = itk::ImageFileWriter<FilterType::OutputImageType>::New();
      writer->SetInput(filter->GetOutput());
      writer->SetFileName(argv[4]);
      writer->SetNumberOfStreamDivisions(std::stoul(argv[5]));
      writer->Update();
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const auto & grid = filter->GetTileGrid();
      std::cout << "volume " << reader->GetOutput()->GetLargestPossibleRegion().GetSize() << ", " << argv[5]
                << " pieces, tile " << grid.GetTileSize() << " (input " << grid.GetInputTileSize() << "), batch "
                << filter->GetTilesPerBatch() << " (0: automatic), budget " << filter->GetMemoryBudget()
                << " MB, estimated working memory " << filter->GetEstimatedWorkingMemory() << " MB, "
                << itk::ImageRegion<3>(grid.GetNumberOfTiles()).GetNumberOfPixels() << " tiles, " << tilesRun
                << " run in " << executions << " executions\n"
                << "wall " << seconds << " s, peak RSS " << PeakResidentMegabytes() << " MB (resident before any tile "
                << residentBeforeTiles << " MB), GLIBC_TUNABLES="
                << (std::getenv("GLIBC_TUNABLES") ? std::getenv("GLIBC_TUNABLES") : "(unset)") << std::endl;
      return EXIT_SUCCESS;
    }
  }
  catch (const itk::ExceptionObject & error)
  {
    std::cerr << error << std::endl;
    return EXIT_FAILURE;
  }
  std::cerr << "Usage: " << argv[0] << " generate volume.mha x y z\n       " << argv[0]
            << " segment model.pt volume.mha labels.mha pieces [memory budget MB] [torch threads]" << std::endl;
  return EXIT_FAILURE;
}
