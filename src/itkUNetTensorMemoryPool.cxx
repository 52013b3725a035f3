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
#include "itkUNetTensorMemoryPool.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <sanitizer/asan_interface.h>

#include <cstdint>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <utility>

namespace itk
{

namespace
{

/** Blocks are cut in multiples of this, which keeps them aligned as LibTorch needs. */
constexpr std::size_t Granule = std::size_t{ 64 } << 10;

/** The pool's memory: segments from the system, cut into blocks. A request takes the smallest free block that holds
 * it, cut to size where the rest is at least MinimumBlockBytes; a returned block merges with the free blocks beside it
 * in its segment. So a pass's later layers reuse the memory of its earlier ones, as a heap does. Under AddressSanitizer
 * free blocks are poisoned, so that a use of a freed tensor's memory, or an overrun into a free neighbour, is reported
 * as it would be with an allocation of its own. Not thread-safe: the allocator locks around it. */
class BlockArena
{
public:
  /** A block taken from the arena: where it starts (nullptr for none) and its size. */
  struct Taken
  {
    char *      Start;
    std::size_t Size;
  };

  /** A free block of `size` bytes (a multiple of Granule), or a little more, now taken; none where none holds it.
   * `clock` stamps it. */
  Taken
  Take(std::size_t size, std::uint64_t clock)
  {
    const auto fit = m_Free.lower_bound({ size, nullptr });
    if (fit == m_Free.end())
    {
      return { nullptr, 0 };
    }
    char * const start = fit->second;
    m_Free.erase(fit);
    Block & block = m_Blocks.at(start);
    if (block.Size - size >= UNetTensorMemoryPool::MinimumBlockBytes)
    {
      m_Blocks.emplace(start + size, Block{ block.Segment, block.Size - size, block.Stamp, true });
      m_Free.emplace(block.Size - size, start + size);
      block.Size = size;
    }
    block.Free = false;
    block.Stamp = clock;
    ASAN_UNPOISON_MEMORY_REGION(start, block.Size);
    m_FreeBytes -= block.Size;
    m_TakenBytes += block.Size;
    return { start, block.Size };
  }

  /** Adds a segment of `size` bytes from the system, as one block taken now. */
  void
  AddTaken(char * segment, std::size_t size, std::uint64_t clock)
  {
    m_Blocks.emplace(segment, Block{ segment, size, clock, false });
    m_TakenBytes += size;
  }

  /** A block given back: its size (0 where no block of the arena's is taken at that address, which is left alone),
   * and its segment where all of that is free now, else nullptr. */
  struct Returned
  {
    std::size_t Size;
    char *      WholeSegment;
  };

  /** Frees the taken block at `memory`, if it is one, merged with the free blocks beside it. */
  Returned
  Return(void * memory, std::uint64_t clock)
  {
    auto block = m_Blocks.find(static_cast<char *>(memory));
    if (block == m_Blocks.end() || block->second.Free)
    {
      return { 0, nullptr };
    }
    const std::size_t size = block->second.Size;
    ASAN_POISON_MEMORY_REGION(block->first, block->second.Size);
    block->second.Free = true;
    block->second.Stamp = clock;
    m_TakenBytes -= block->second.Size;
    m_FreeBytes += block->second.Size;
    const auto next = std::next(block);
    if (next != m_Blocks.end() && this->IsFreeInSegment(next, block->second.Segment))
    {
      block->second.Size += this->Unlist(next);
    }
    if (block != m_Blocks.begin() && this->IsFreeInSegment(std::prev(block), block->second.Segment))
    {
      const auto merged = std::prev(block);
      m_Free.erase({ merged->second.Size, merged->first });
      merged->second.Size += block->second.Size;
      merged->second.Stamp = clock;
      m_Blocks.erase(block);
      block = merged;
    }
    m_Free.emplace(block->second.Size, block->first);
    return { size, this->IsWholeSegment(block) ? block->first : nullptr };
  }

  /** Gives the wholly free segments last used at `clock` or before back to the system; by default all of them. */
  void
  FreeIdleSegments(std::uint64_t clock = std::numeric_limits<std::uint64_t>::max())
  {
    for (auto free = m_Free.begin(); free != m_Free.end();)
    {
      const auto block = m_Blocks.find(free->second);
      ++free;
      if (this->IsWholeSegment(block) && block->second.Stamp <= clock)
      {
        this->FreeSegment(block->first);
      }
    }
  }

  /** Gives a wholly free segment back to the system. */
  void
  FreeSegment(char * segment)
  {
    const auto block = m_Blocks.find(segment);
    m_FreeBytes -= block->second.Size;
    m_Free.erase({ block->second.Size, segment });
    ASAN_UNPOISON_MEMORY_REGION(segment, block->second.Size);
    m_Blocks.erase(block);
    c10::free_cpu(segment);
  }

  std::size_t
  GetFreeBytes() const
  {
    return m_FreeBytes;
  }

  std::size_t
  GetTakenBytes() const
  {
    return m_TakenBytes;
  }

private:
  /** A block: the segment it lies in, its size, whether it is free, and the clock when it was last taken or freed. */
  struct Block
  {
    char *        Segment;
    std::size_t   Size;
    std::uint64_t Stamp;
    bool          Free;
  };
  using BlockIterator = std::map<char *, Block>::iterator;
  using BlockConstIterator = std::map<char *, Block>::const_iterator;

  /** Whether `block` is all of its segment: the segment's first block, with the next one in another segment. */
  bool
  IsWholeSegment(BlockConstIterator block) const
  {
    const auto next = std::next(block);
    return block->first == block->second.Segment &&
           (next == m_Blocks.end() || next->second.Segment != block->second.Segment);
  }

  bool
  IsFreeInSegment(BlockIterator block, const char * segment) const
  {
    return block->second.Free && block->second.Segment == segment;
  }

  /** Removes a listed free block, merged into the one before it; returns its size. */
  std::size_t
  Unlist(BlockIterator block)
  {
    const std::size_t size = block->second.Size;
    m_Free.erase({ size, block->first });
    m_Blocks.erase(block);
    return size;
  }

  std::map<char *, Block>                  m_Blocks; // by address
  std::set<std::pair<std::size_t, char *>> m_Free;   // by size, then address
  std::size_t                              m_FreeBytes{ 0 };
  std::size_t                              m_TakenBytes{ 0 };
};

/** LibTorch's CPU allocator while the pool is installed: blocks of MinimumBlockBytes or more, requested while a Scope
 * lives, come from the pool; everything else from the allocator it replaced. One instance, never destroyed, since
 * tensors may outlive everything else. */
class PoolingAllocator final : public c10::Allocator
{
public:
  static PoolingAllocator &
  Instance()
  {
    static auto * const pool = new PoolingAllocator(c10::GetCPUAllocator());
    return *pool;
  }

  c10::DataPtr
  allocate(std::size_t bytes) const override
  {
    void * const block = bytes >= UNetTensorMemoryPool::MinimumBlockBytes ? Take(bytes) : nullptr;
    if (block == nullptr)
    {
      return m_Previous->allocate(bytes);
    }
    return { block, block, &Release, c10::Device(c10::DeviceType::CPU) };
  }

  c10::DeleterFnPtr
  raw_deleter() const override
  {
    return &Release;
  }

  void
  BeginScope()
  {
    std::call_once(m_Installed, [this] { c10::SetCPUAllocator(this, InstalledPriority); });
    const std::lock_guard<std::mutex> lock(m_Mutex);
    ++m_Scopes;
  }

  void
  EndScope()
  {
    this->CountOut(m_Scopes);
  }

  /** Returns the clock. */
  std::uint64_t
  BeginHold()
  {
    const std::lock_guard<std::mutex> lock(m_Mutex);
    ++m_Holds;
    return m_Clock;
  }

  void
  EndHold()
  {
    this->CountOut(m_Holds);
  }

  /** Frees what is kept and was last used when the clock read `clock` or before; returns the clock now. */
  std::uint64_t
  FreeKeptIdleSince(std::uint64_t clock) const
  {
    const std::lock_guard<std::mutex> lock(m_Mutex);
    m_Arena.FreeIdleSegments(clock);
    return m_Clock;
  }

  std::size_t
  GetKeptBytes() const
  {
    const std::lock_guard<std::mutex> lock(m_Mutex);
    return m_Arena.GetFreeBytes();
  }

  std::size_t
  GetUsedBytes() const
  {
    const std::lock_guard<std::mutex> lock(m_Mutex);
    return m_Arena.GetTakenBytes();
  }

private:
  /** Above the priority LibTorch registers its own CPU allocator with, so that the pool replaces it. */
  static constexpr uint8_t InstalledPriority = 1;

  explicit PoolingAllocator(c10::Allocator * previous)
    : m_Previous(previous)
  {}

  /** Counts a Scope or a Hold (`count`, m_Scopes or m_Holds) out; where neither is left, frees what is kept. */
  void
  CountOut(std::size_t & count) const
  {
    const std::lock_guard<std::mutex> lock(m_Mutex);
    if (--count == 0 && m_Scopes + m_Holds == 0)
    {
      m_Arena.FreeIdleSegments();
    }
  }

  /** A kept block for `bytes`, or a new one; nullptr outside a Scope. */
  void *
  Take(std::size_t bytes) const
  {
    const std::size_t size = (bytes + Granule - 1) / Granule * Granule;
    {
      const std::lock_guard<std::mutex> lock(m_Mutex);
      if (m_Scopes == 0)
      {
        return nullptr;
      }
      if (const BlockArena::Taken kept = m_Arena.Take(size, ++m_Clock); kept.Start != nullptr)
      {
        this->Report(kept.Start, static_cast<int64_t>(kept.Size));
        return kept.Start;
      }
    }
    char * const block = this->AllocateNew(size);
    const std::lock_guard<std::mutex> lock(m_Mutex);
    m_Arena.AddTaken(block, size, ++m_Clock);
    this->Report(block, static_cast<int64_t>(size));
    return block;
  }

  /** A new segment; where the system has none left, frees what is kept (useless to a caller that retries with smaller
   * passes) and tries once more, then throws c10::Error as LibTorch's own allocator does. */
  char *
  AllocateNew(std::size_t size) const
  {
    try
    {
      return static_cast<char *>(c10::alloc_cpu(size));
    }
    catch (const c10::Error &)
    {
      const std::lock_guard<std::mutex> lock(m_Mutex);
      m_Arena.FreeIdleSegments();
    }
    return static_cast<char *>(c10::alloc_cpu(size));
  }

  static void
  Release(void * block)
  {
    Instance().Return(block);
  }

  /** Keeps a block while a Scope lives; otherwise gives its segment back once all of it is free (a Hold keeps only
   * what Scopes left). */
  void
  Return(void * block) const
  {
    std::unique_lock<std::mutex> lock(m_Mutex);
    const BlockArena::Returned   returned = m_Arena.Return(block, ++m_Clock);
    if (returned.Size == 0)
    {
      lock.unlock();
      // raw_allocate()d by the allocator the pool replaced (oneDNN's memory, through LibTorch's registration)
      const c10::DeleterFnPtr previousDeleter = m_Previous->raw_deleter();
      (previousDeleter != nullptr ? previousDeleter : &c10::free_cpu)(block);
      return;
    }
    this->Report(block, -static_cast<int64_t>(returned.Size));
    if (m_Scopes == 0 && returned.WholeSegment != nullptr)
    {
      m_Arena.FreeSegment(returned.WholeSegment);
    }
  }

  /** As LibTorch's own CPU allocator does, for its memory profiler (and UNetModel's forward-memory measurement). */
  void
  Report(void * block, int64_t bytes) const
  {
    if (c10::memoryProfilingEnabled())
    {
      const std::size_t used = m_Arena.GetTakenBytes();
      c10::reportMemoryUsageToProfiler(block,
                                       bytes,
                                       static_cast<int64_t>(used),
                                       static_cast<int64_t>(used + m_Arena.GetFreeBytes()),
                                       c10::Device(c10::DeviceType::CPU));
    }
  }

  c10::Allocator * const m_Previous;
  std::once_flag         m_Installed;
  mutable std::mutex     m_Mutex;
  mutable std::size_t    m_Scopes{ 0 };
  mutable std::size_t    m_Holds{ 0 };
  mutable BlockArena     m_Arena;
  mutable std::uint64_t  m_Clock{ 0 };
};

} // namespace

UNetTensorMemoryPool::Scope::Scope()
{
  PoolingAllocator::Instance().BeginScope();
}

UNetTensorMemoryPool::Scope::~Scope()
{
  PoolingAllocator::Instance().EndScope();
}

UNetTensorMemoryPool::Hold::Hold()
  : m_Clock(PoolingAllocator::Instance().BeginHold())
{}

UNetTensorMemoryPool::Hold::~Hold()
{
  PoolingAllocator::Instance().EndHold();
}

void
UNetTensorMemoryPool::Hold::FreeIdleBlocks()
{
  m_Clock = PoolingAllocator::Instance().FreeKeptIdleSince(m_Clock);
}

std::size_t
UNetTensorMemoryPool::GetKeptBytes()
{
  return PoolingAllocator::Instance().GetKeptBytes();
}

std::size_t
UNetTensorMemoryPool::GetUsedBytes()
{
  return PoolingAllocator::Instance().GetUsedBytes();
}

} // namespace itk
