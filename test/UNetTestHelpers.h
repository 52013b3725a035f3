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
#ifndef UNetTestHelpers_h
#define UNetTestHelpers_h

#include "itkImage.h"
#include "itkUNetModel.h"
#include "itkImageRegionIterator.h"
#include "itkImageRegionIteratorWithIndex.h"

#include "gtest/gtest.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

namespace UNetTest
{

inline std::string
ModelPath(const std::string & name)
{
  return std::string(UNET_TEST_MODEL_DIR) + "/" + name + ".pt";
}

/** The test model `name` (test/make_test_models.py), loaded for images of `dimension` (0: as probed) on `threads`
 * LibTorch threads (0: ITK's default). */
inline itk::UNetModel::Pointer
LoadModel(const std::string & name, unsigned int dimension = 0, unsigned int threads = 0)
{
  auto model = itk::UNetModel::New();
  model->SetFileName(ModelPath(name));
  model->SetImageDimension(dimension);
  model->SetNumberOfThreads(threads);
  model->Load();
  return model;
}

/** A path in the test output directory, named after the running test and `name`, so that tests running side by side
 * write different files. */
inline std::string
OutputPath(const std::string & name)
{
  const testing::TestInfo * test = testing::UnitTest::GetInstance()->current_test_info();
  return std::string(UNET_TEST_OUTPUT_DIR) + "/" + test->test_suite_name() + "." + test->name() + "." + name;
}

/** Copies the file `from` over `to` and makes `to` look modified a second later than before (a copy made within one
 * tick of the file system's clock would otherwise keep the time it had). */
inline void
RewriteFile(const std::string & from, const std::string & to)
{
  const bool existed = std::filesystem::exists(to);
  const auto before = existed ? std::filesystem::last_write_time(to) : std::filesystem::file_time_type();
  std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing);
  if (existed)
  {
    std::filesystem::last_write_time(to,
                                     std::max(std::filesystem::last_write_time(to), before + std::chrono::seconds(1)));
  }
}

/** Limits this process's address space (RLIMIT_AS) to what it maps now plus `headroomBytes`, so that a larger
 * allocation fails here as it would on a host without the memory, whatever this host has and however it overcommits.
 * For a child process (a death test's statement) only. False where no limit was set: under AddressSanitizer, which
 * reserves terabytes of address space, or when setrlimit refuses. */
inline bool
LimitAddressSpace(std::uint64_t headroomBytes)
{
#if defined(__SANITIZE_ADDRESS__)
  (void)headroomBytes;
  return false;
#else
  std::ifstream statm("/proc/self/statm");
  std::uint64_t mappedPages = 0;
  if (!(statm >> mappedPages))
  {
    return false;
  }
  const auto limit =
    static_cast<rlim_t>(mappedPages * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE)) + headroomBytes);
  const rlimit addressSpace{ limit, limit };
  return setrlimit(RLIMIT_AS, &addressSpace) == 0;
#endif
}

/** An image of the given size with uniform random values in [low, high), and non-trivial metadata. */
template <typename TImage>
typename TImage::Pointer
MakeRandomImage(const typename TImage::SizeType & size, unsigned int seed, double low = -2.0, double high = 2.0)
{
  auto                       image = TImage::New();
  typename TImage::IndexType start;
  start.Fill(3);
  image->SetRegions(typename TImage::RegionType(start, size));
  typename TImage::SpacingType spacing;
  typename TImage::PointType   origin;
  for (unsigned int axis = 0; axis < TImage::ImageDimension; ++axis)
  {
    spacing[axis] = 0.5 + 0.25 * axis;
    origin[axis] = -10.0 + 3.0 * axis;
  }
  image->SetSpacing(spacing);
  image->SetOrigin(origin);
  typename TImage::DirectionType direction;
  direction.SetIdentity();
  direction[0][0] = 0.0;
  direction[0][1] = 1.0;
  direction[1][0] = 1.0;
  direction[1][1] = 0.0;
  image->SetDirection(direction);
  image->Allocate();
  std::mt19937                     generator(seed);
  std::uniform_real_distribution<> distribution(low, high);
  for (itk::ImageRegionIterator<TImage> it(image, image->GetLargestPossibleRegion()); !it.IsAtEnd(); ++it)
  {
    it.Set(static_cast<typename TImage::PixelType>(distribution(generator)));
  }
  return image;
}

/** Mirroring with the edge voxel repeated, by repeated reflection: an algorithm independent of the filter's. */
inline itk::IndexValueType
ReflectIntoRange(itk::IndexValueType x, itk::IndexValueType start, itk::IndexValueType size)
{
  itk::IndexValueType local = x - start;
  while (local < 0 || local >= size)
  {
    local = local < 0 ? -local - 1 : 2 * size - 1 - local;
  }
  return start + local;
}

inline double
Sigmoid(double x)
{
  return 1.0 / (1.0 + std::exp(-x));
}

template <typename TImage>
void
ExpectSameMetadata(const itk::ImageBase<TImage::ImageDimension> * expected, const TImage * actual)
{
  EXPECT_EQ(expected->GetOrigin(), actual->GetOrigin());
  EXPECT_EQ(expected->GetSpacing(), actual->GetSpacing());
  EXPECT_EQ(expected->GetDirection(), actual->GetDirection());
  EXPECT_EQ(expected->GetLargestPossibleRegion(), actual->GetLargestPossibleRegion());
}

} // namespace UNetTest

#endif
