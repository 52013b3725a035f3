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
#include "itkUNetProcessHeap.h"

#include <gtest/gtest.h>

#include <climits>
#include <cstdlib>
#include <malloc.h>

// Each probe runs in a process started afresh (the death test's "threadsafe" style), whose malloc settings it sets
// first as a program would: malloc's settings, and a probe's own effect on them, are the process's.

namespace
{
constexpr std::size_t MiB = std::size_t{ 1 } << 20;
}

TEST(UNetProcessHeap, KeptWhereTheProcessNeitherMapsNorTrimsAndHasOneArena)
{
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer's allocator is not glibc's: mallinfo2 does not see it.";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
    {
      mallopt(M_MMAP_MAX, 0);
      mallopt(M_TRIM_THRESHOLD, INT_MAX);
      mallopt(M_ARENA_MAX, 1);
      std::exit(itk::UNetProcessHeap::KeepsFreedMemory() ? 0 : 1);
    },
    testing::ExitedWithCode(0),
    "");
}

TEST(UNetProcessHeap, NotKeptWhereLargeBlocksAreMappedOrHeapsTrimmed)
{
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Each child sets all that matters, whatever GLIBC_TUNABLES its environment has; 8 arenas are a 1-core host's
  // default.
  // glibc's defaults before any large block was freed: each block mapped on its own, unmapped when freed.
  EXPECT_EXIT(
    {
      mallopt(M_MMAP_MAX, 65536);
      mallopt(M_MMAP_THRESHOLD, 128 * 1024);
      mallopt(M_TRIM_THRESHOLD, 128 * 1024);
      mallopt(M_ARENA_MAX, 8);
      std::exit(itk::UNetProcessHeap::KeepsFreedMemory() ? 1 : 0);
    },
    testing::ExitedWithCode(0),
    "");
  // Blocks in the heap, whose top is trimmed once freed.
  EXPECT_EXIT(
    {
      mallopt(M_MMAP_MAX, 0);
      mallopt(M_TRIM_THRESHOLD, 128 * 1024);
      mallopt(M_ARENA_MAX, 8);
      std::exit(itk::UNetProcessHeap::KeepsFreedMemory() ? 1 : 0);
    },
    testing::ExitedWithCode(0),
    "");
  // Neither mapped nor trimmed, but in a thread's own arena: an emptied heap beyond its first is unmapped whatever
  // the trim threshold, and the probe's memory takes two heaps.
  EXPECT_EXIT(
    {
      mallopt(M_MMAP_MAX, 0);
      mallopt(M_TRIM_THRESHOLD, INT_MAX);
      mallopt(M_ARENA_MAX, 8);
      std::exit(itk::UNetProcessHeap::KeepsFreedMemory() ? 1 : 0);
    },
    testing::ExitedWithCode(0),
    "");
}

TEST(UNetProcessHeap, AProbeOfNothingOrOfBlocksLargerThanItsMemoryIsNotKept)
{
  EXPECT_FALSE(itk::UNetProcessHeap::ProbeKeepsFreedMemory(0, MiB));
  EXPECT_FALSE(itk::UNetProcessHeap::ProbeKeepsFreedMemory(MiB, 0));
  EXPECT_FALSE(itk::UNetProcessHeap::ProbeKeepsFreedMemory(MiB, 2 * MiB));
}
