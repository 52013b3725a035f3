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
#ifndef itkUNetProcessHeap_h
#define itkUNetProcessHeap_h

#include "UNetSegmentationExport.h"

#include <cstddef>

namespace itk
{

/** \class UNetProcessHeap
 * \brief Whether the process's malloc keeps the memory that a thread of its own frees, rather than handing it back to
 * the kernel.
 *
 * A forward pass on the CPU runs on a thread of its own and frees all its activations when it ends. Under glibc's
 * defaults large blocks are mapped and unmapped one by one, and a thread's arena unmaps each heap (64 MiB at most) once
 * it is empty, so that the next pass faults its memory in afresh; a program may keep it instead (mallopt or
 * GLIBC_TUNABLES: no mmap, no trim, one arena, as the command-line tool does). UNetSegmentationImageFilter asks which
 * holds to choose how large a forward pass may grow, and whether to keep LibTorch's blocks itself during an update
 * (UNetTensorMemoryPool). The answer is observed, not read from settings: a new thread allocates blocks and frees
 * them, and glibc's mallinfo2 says whether the process still holds them. Other C libraries, and allocators that
 * glibc's mallinfo2 does not see (a sanitizer's), answer false.
 *
 * \sa UNetSegmentationImageFilter, UNetTilePlan, UNetTensorMemoryPool
 * \ingroup UNetSegmentation
 */
class UNetSegmentation_EXPORT UNetProcessHeap
{
public:
  /** The memory the probe behind KeepsFreedMemory() allocates and frees, and the blocks it allocates it in: twice the
   * largest forward pass that the filter groups where the heap keeps it, in blocks the size of a small activation. */
  static constexpr std::size_t ProbeBytes = std::size_t{ 128 } << 20;
  static constexpr std::size_t ProbeBlockBytes = std::size_t{ 4 } << 20;

  /** Whether this process keeps ProbeBytes freed by a thread of its own: probed once, at the first call, so that a
   * program's own mallopt comes first. Thread-safe. */
  static bool
  KeepsFreedMemory();

  /** Probes it now: a new thread allocates `bytes` in blocks of `blockBytes` and frees them; true where the process
   * still holds all but less than one block of them afterwards. */
  static bool
  ProbeKeepsFreedMemory(std::size_t bytes, std::size_t blockBytes);
};

} // namespace itk

#endif
