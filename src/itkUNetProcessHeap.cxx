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

#include <cstdlib>
#include <thread>
#include <vector>

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#  include <malloc.h>
#  define UNET_HAS_MALLINFO2 1
#endif

namespace itk
{

namespace
{

#if defined(UNET_HAS_MALLINFO2)
/** The memory all of the process's arenas hold from the kernel: their heaps and their blocks mapped on their own. */
std::size_t
HeldFromTheKernel()
{
  const struct mallinfo2 info = mallinfo2();
  return info.arena + info.hblkhd;
}
#endif

} // namespace

bool
UNetProcessHeap::KeepsFreedMemory()
{
  static const bool keeps = ProbeKeepsFreedMemory(ProbeBytes, ProbeBlockBytes);
  return keeps;
}

bool
UNetProcessHeap::ProbeKeepsFreedMemory(std::size_t bytes, std::size_t blockBytes)
{
#if defined(UNET_HAS_MALLINFO2)
  if (blockBytes == 0 || blockBytes > bytes)
  {
    return false;
  }
  // A thread of its own, as a forward pass has: the main thread's arena is never unmapped. The blocks are never
  // written, so that the probe faults nothing in.
  std::size_t heldWithTheBlocks = 0;
  std::size_t heldAfterFreeing = 0;
  std::thread([&] {
    std::vector<void *> blocks(bytes / blockBytes, nullptr);
    for (void *& block : blocks)
    {
      block = std::malloc(blockBytes);
    }
    heldWithTheBlocks = HeldFromTheKernel();
    for (void * block : blocks)
    {
      std::free(block);
    }
    heldAfterFreeing = HeldFromTheKernel();
  }).join();
  return heldWithTheBlocks >= bytes && heldWithTheBlocks < heldAfterFreeing + blockBytes;
#else
  (void)bytes;
  (void)blockBytes;
  return false;
#endif
}

} // namespace itk
