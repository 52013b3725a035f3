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

// Segments a 2-D 8-bit image with a TorchScript U-Net, in streamed pieces, and optionally scores the
// result against a ground-truth mask (pixel accuracy and Dice of class 1).
//
//   UNetSegmentImage model.pt input.png labels.png [ground_truth.png] [stream_divisions] [tile_edge]
//
// The label map is written with class k as k * 255 / (classes - 1), so that two classes show as black and white.

#include "itkImageFileReader.h"
#include "itkImageFileWriter.h"
#include "itkImageRegionConstIterator.h"
#include "itkStreamingImageFilter.h"
#include "itkUNetSegmentationImageFilter.h"
#include "itkUnaryGeneratorImageFilter.h"

#include <iomanip>
#include <iostream>

int
main(int argc, char * argv[])
{
  if (argc < 4)
  {
    std::cerr << "Usage: " << argv[0]
              << " model.pt input.png labels.png [ground_truth.png] [stream_divisions] [tile_edge]" << std::endl;
    return EXIT_FAILURE;
  }
  using ImageType = itk::Image<unsigned char, 2>;
  using FilterType = itk::UNetSegmentationImageFilter<ImageType>;
  try
  {
    const auto input = itk::ReadImage<ImageType>(argv[2]);

    auto segmenter = FilterType::New();
    segmenter->SetInput(input);
    segmenter->SetModelFileName(argv[1]);
    if (argc > 6)
    {
      FilterType::SizeType tile;
      tile.Fill(std::stoul(argv[6]));
      segmenter->SetTileSize(tile);
    }
    const unsigned int pieces = argc > 5 ? std::stoul(argv[5]) : 4;
    unsigned int       piece = 0; // The segmenter runs once per stream piece, its progress going 0 to 1 each time.
    segmenter->AddObserver(itk::StartEvent(), [&piece](const itk::EventObject &) { ++piece; });
    segmenter->AddObserver(itk::ProgressEvent(), [&](const itk::EventObject &) {
      std::cout << "\rsegmenting: piece " << piece << " of " << pieces << ", " << std::setw(3)
                << static_cast<int>(100 * segmenter->GetProgress()) << " %" << std::flush;
    });
    segmenter->UpdateOutputInformation();
    const unsigned int classes = segmenter->GetModel()->GetNumberOfClasses();
    std::cout << "model: " << argv[1] << "\n  channels " << segmenter->GetModel()->GetNumberOfInputChannels()
              << ", classes " << classes << ", border " << segmenter->GetModel()->GetBorder() << ", tile edges "
              << segmenter->GetModel()->GetMinimumOutputSize() << " + k * "
              << segmenter->GetModel()->GetSizeGranularity() << std::endl;

    auto scale = itk::UnaryGeneratorImageFilter<ImageType, ImageType>::New();
    scale->SetInput(segmenter->GetOutput());
    const auto toGrey = [classes](unsigned char label) {
      return static_cast<unsigned char>(label * 255 / (classes - 1));
    };
    scale->SetFunctor(toGrey);

    // PNG cannot be written piecewise, so the streaming happens here: the segmenter computes one piece after the
    // other, reading only the input each piece's tiles need.
    auto streamer = itk::StreamingImageFilter<ImageType, ImageType>::New();
    streamer->SetInput(scale->GetOutput());
    streamer->SetNumberOfStreamDivisions(pieces);
    itk::WriteImage(streamer->GetOutput(), argv[3]);
    std::cout << "\nwrote " << argv[3] << std::endl;

    if (argc > 4)
    {
      // The streamer holds the whole (scaled) label map, assembled from the pieces.
      const unsigned char                      classOne = toGrey(1);
      const auto                               truth = itk::ReadImage<ImageType>(argv[4]);
      itk::ImageRegionConstIterator<ImageType> t(truth, truth->GetLargestPossibleRegion());
      itk::ImageRegionConstIterator<ImageType> p(streamer->GetOutput(), truth->GetLargestPossibleRegion());
      double                                   correct = 0, both = 0, predicted = 0, actual = 0, total = 0;
      for (; !t.IsAtEnd(); ++t, ++p)
      {
        const bool truthIsOne = t.Get() >= 128;
        const bool predictedOne = p.Get() == classOne;
        correct += truthIsOne == predictedOne;
        both += truthIsOne && predictedOne;
        predicted += predictedOne;
        actual += truthIsOne;
        ++total;
      }
      std::cout << std::fixed << std::setprecision(4) << "pixel accuracy " << correct / total << ", Dice (class 1) "
                << 2.0 * both / (predicted + actual) << std::endl;
    }
  }
  catch (const itk::ExceptionObject & error)
  {
    std::cerr << "\nError: " << error.GetDescription() << std::endl;
    return EXIT_FAILURE;
  }
  return EXIT_SUCCESS;
}
