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

struct MallocSettings
{
  int MmapMax;
  int MmapThreshold; // 0: glibc's own, which rises with the largest mapped block freed
  int TrimThreshold;
  int Arenas;
};

/** Applies `settings` with mallopt in a process started afresh, before any probe, as a program would, and expects
 * the probe's verdict there to be `kept`. Each setting is applied, whatever GLIBC_TUNABLES the environment has. */
void
ExpectVerdict(const MallocSettings & settings, bool kept)
{
  EXPECT_EXIT(
    {
      mallopt(M_MMAP_MAX, settings.MmapMax);
      if (settings.MmapThreshold > 0)
      {
        mallopt(M_MMAP_THRESHOLD, settings.MmapThreshold);
      }
      mallopt(M_TRIM_THRESHOLD, settings.TrimThreshold);
      mallopt(M_ARENA_MAX, settings.Arenas);
      std::exit(itk::UNetProcessHeap::KeepsFreedMemory() == kept ? 0 : 1);
    },
    testing::ExitedWithCode(0),
    "");
}

} // namespace

TEST(UNetProcessHeap, KeptWhereTheProcessNeitherMapsNorTrimsAndHasOneArena)
{
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer's allocator is not glibc's: mallinfo2 does not see it.";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  ExpectVerdict({ 0, 0, INT_MAX, 1 }, true); // the command-line module's settings
}

TEST(UNetProcessHeap, NotKeptWhereLargeBlocksAreMappedOrHeapsTrimmed)
{
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // glibc's defaults (8 arenas on a 1-core host) before any large block was freed: each block mapped on its own,
  // unmapped when freed.
  ExpectVerdict({ 65536, 128 * 1024, 128 * 1024, 8 }, false);
  // Blocks in the heap, whose top is trimmed once freed.
  ExpectVerdict({ 0, 0, 128 * 1024, 8 }, false);
  // Neither mapped nor trimmed, but in a thread's own arena: an emptied heap beyond its first is unmapped whatever
  // the trim threshold, and the probe's memory takes two heaps.
  ExpectVerdict({ 0, 0, INT_MAX, 8 }, false);
}

TEST(UNetProcessHeap, AProbeOfNothingOrOfBlocksLargerThanItsMemoryIsNotKept)
{
  EXPECT_FALSE(itk::UNetProcessHeap::ProbeKeepsFreedMemory(0, MiB));
  EXPECT_FALSE(itk::UNetProcessHeap::ProbeKeepsFreedMemory(MiB, 0));
  EXPECT_FALSE(itk::UNetProcessHeap::ProbeKeepsFreedMemory(MiB, 2 * MiB));
}
