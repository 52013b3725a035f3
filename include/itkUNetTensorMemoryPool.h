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
#ifndef itkUNetTensorMemoryPool_h
#define itkUNetTensorMemoryPool_h

#include "itkMacro.h"
#include "UNetSegmentationExport.h"

#include <cstddef>
#include <cstdint>

namespace itk
{

/** \class UNetTensorMemoryPool
 * \brief Keeps the large blocks of CPU memory that LibTorch frees, for LibTorch to reuse, while a Scope lives.
 *
 * A forward pass allocates its activations afresh and frees them when it ends. Under glibc's defaults blocks that
 * large are mapped and unmapped one by one, so every pass faults all its memory in again; a thread's own arena also
 * unmaps an emptied heap whatever the trim threshold. Setting malloc up not to (mallopt, GLIBC_TUNABLES) is a choice
 * for a whole process, which a library should not make; this pool makes the same choice for LibTorch's large CPU blocks
 * only, and only while a Scope lives: UNetSegmentationImageFilter holds one for each update. While one lives anywhere
 * in the process, a block of at least MinimumBlockBytes that LibTorch frees is kept: merged with the kept blocks
 * beside it, it serves later requests, each from the smallest kept block that holds it, cut to size, as a heap does
 * (so a pass's later layers reuse its earlier layers' memory). When the last Scope ends, what is kept is freed, unless
 * a Hold lives, and memory freed after that is freed at once. The filter also holds a Hold from its first update
 * until it is destroyed (unless KeepWorkingMemory is off), trimmed after each update to the blocks that update used,
 * so that its next update finds them. Smaller blocks, and all blocks outside a Scope, go to the allocator LibTorch
 * had. The pool takes LibTorch's CPU allocator (c10::SetCPUAllocator) when the first Scope begins, and reports its
 * blocks to LibTorch's memory profiler as that allocator does.
 *
 * \sa UNetSegmentationImageFilter, UNetProcessHeap, UNetModel
 * \ingroup UNetSegmentation
 */
class UNetSegmentation_EXPORT UNetTensorMemoryPool
{
public:
  /** The smallest block the pool keeps: glibc's own threshold for mapping a block on its own. */
  static constexpr std::size_t MinimumBlockBytes = std::size_t{ 128 } << 10;

  /** While one lives, the pool keeps what LibTorch frees. Scopes nest and may live on any threads. */
  class UNetSegmentation_EXPORT Scope
  {
  public:
    ITK_DISALLOW_COPY_AND_MOVE(Scope);
    Scope();
    ~Scope();
  };

  /** While one lives, what the pool keeps stays kept when the last Scope ends, for the next Scope to take, though
   * memory freed between Scopes is not kept: for an owner that runs several pieces of work, each in a Scope of its
   * own. */
  class UNetSegmentation_EXPORT Hold
  {
  public:
    ITK_DISALLOW_COPY_AND_MOVE(Hold);
    Hold();
    ~Hold();

    /** Frees the kept memory that nothing has taken or returned since this Hold began or since the last call (by
     * whole blocks of the system's, the pool's own blocks being cut from those), so that what the owner keeps from
     * one piece of work to the next is what the last one used. */
    void
    FreeIdleBlocks();

  private:
    std::uint64_t m_Clock{ 0 };
  };

  /** The bytes the pool keeps unused now. */
  static std::size_t
  GetKeptBytes();
  /** The bytes of the pool's blocks that LibTorch uses now. */
  static std::size_t
  GetUsedBytes();
};

} // namespace itk

#endif
