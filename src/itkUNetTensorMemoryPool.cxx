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

#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>

namespace itk
{

namespace
{

/** Blocks are kept in multiples of this, so that requests that differ a little share them. */
constexpr std::size_t Granule = std::size_t{ 64 } << 10;

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

  /** Frees the kept blocks that were last returned when the clock read `clock` or before; returns the clock now. */
  std::uint64_t
  FreeKeptIdleSince(std::uint64_t clock) const
  {
    const std::lock_guard<std::mutex> lock(m_Mutex);
    for (auto kept = m_Kept.begin(); kept != m_Kept.end();)
    {
      const auto owned = m_Owned.find(kept->second);
      if (owned->second.Stamp > clock)
      {
        ++kept;
        continue;
      }
      m_KeptBytes -= owned->second.Size;
      c10::free_cpu(owned->first);
      m_Owned.erase(owned);
      kept = m_Kept.erase(kept);
    }
    return m_Clock;
  }

  void
  EndScope()
  {
    {
      const std::lock_guard<std::mutex> lock(m_Mutex);
      if (--m_Scopes > 0 || m_Holds > 0)
      {
        return;
      }
    }
    this->FreeKept();
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
    {
      const std::lock_guard<std::mutex> lock(m_Mutex);
      if (--m_Holds > 0 || m_Scopes > 0)
      {
        return;
      }
    }
    this->FreeKept();
  }

  std::size_t
  GetKeptBytes() const
  {
    const std::lock_guard<std::mutex> lock(m_Mutex);
    return m_KeptBytes;
  }

  std::size_t
  GetUsedBytes() const
  {
    const std::lock_guard<std::mutex> lock(m_Mutex);
    return m_UsedBytes;
  }

private:
  /** Above the priority LibTorch registers its own CPU allocator with, so that the pool replaces it. */
  static constexpr uint8_t InstalledPriority = 1;

  explicit PoolingAllocator(c10::Allocator * previous)
    : m_Previous(previous)
  {}

  /** A kept block for `bytes`, or a new one; nullptr outside a Scope. */
  void *
  Take(std::size_t bytes) const
  {
    const std::size_t size = (bytes + Granule - 1) / Granule * Granule;
    void *            block = nullptr;
    std::size_t       blockSize = size;
    {
      const std::lock_guard<std::mutex> lock(m_Mutex);
      if (m_Scopes == 0)
      {
        return nullptr;
      }
      const auto kept = m_Kept.lower_bound(size);
      if (kept != m_Kept.end() && kept->first <= size + size / 8)
      {
        blockSize = kept->first;
        block = kept->second;
        m_Kept.erase(kept);
        m_KeptBytes -= blockSize;
      }
    }
    if (block == nullptr)
    {
      block = this->AllocateNew(size);
    }
    const std::lock_guard<std::mutex> lock(m_Mutex);
    m_Owned[block] = { blockSize, ++m_Clock };
    m_UsedBytes += blockSize;
    Report(block, static_cast<int64_t>(blockSize));
    return block;
  }

  /** A new block; where the system has none left, frees what is kept (blocks of other sizes, useless to a caller
   * that retries with smaller passes) and tries once more, then throws c10::Error as LibTorch's own allocator does. */
  void *
  AllocateNew(std::size_t size) const
  {
    try
    {
      return c10::alloc_cpu(size);
    }
    catch (const c10::Error &)
    {
      this->FreeKept();
    }
    return c10::alloc_cpu(size);
  }

  void
  FreeKept() const
  {
    const std::lock_guard<std::mutex> lock(m_Mutex);
    for (const auto & kept : m_Kept)
    {
      m_Owned.erase(kept.second);
      c10::free_cpu(kept.second);
    }
    m_Kept.clear();
    m_KeptBytes = 0;
  }

  static void
  Release(void * block)
  {
    Instance().Return(block);
  }

  void
  Return(void * block) const
  {
    std::unique_lock<std::mutex> lock(m_Mutex);
    const auto                   owned = m_Owned.find(block);
    if (owned == m_Owned.end())
    {
      lock.unlock();
      // raw_allocate()d by the allocator the pool replaced (oneDNN's memory, through LibTorch's registration)
      const c10::DeleterFnPtr previousDeleter = m_Previous->raw_deleter();
      (previousDeleter != nullptr ? previousDeleter : &c10::free_cpu)(block);
      return;
    }
    const std::size_t size = owned->second.Size;
    owned->second.Stamp = ++m_Clock;
    m_UsedBytes -= size;
    Report(block, -static_cast<int64_t>(size));
    if (m_Scopes > 0)
    {
      m_Kept.emplace(size, block);
      m_KeptBytes += size;
      return;
    }
    m_Owned.erase(owned);
    lock.unlock();
    c10::free_cpu(block);
  }

  /** As LibTorch's own CPU allocator does, for its memory profiler (and UNetModel's forward-memory measurement). */
  void
  Report(void * block, int64_t bytes) const
  {
    if (c10::memoryProfilingEnabled())
    {
      c10::reportMemoryUsageToProfiler(block,
                                       bytes,
                                       static_cast<int64_t>(m_UsedBytes),
                                       static_cast<int64_t>(m_UsedBytes + m_KeptBytes),
                                       c10::Device(c10::DeviceType::CPU));
    }
  }

  /** A block of the pool's: its size, and the clock (counting blocks taken and returned) when it was last taken or
   * returned. */
  struct Block
  {
    std::size_t   Size;
    std::uint64_t Stamp;
  };

  c10::Allocator * const                     m_Previous;
  std::once_flag                             m_Installed;
  mutable std::mutex                         m_Mutex;
  mutable std::size_t                        m_Scopes{ 0 };
  mutable std::size_t                        m_Holds{ 0 };
  mutable std::multimap<std::size_t, void *> m_Kept;
  mutable std::unordered_map<void *, Block>  m_Owned;
  mutable std::size_t                        m_KeptBytes{ 0 };
  mutable std::size_t                        m_UsedBytes{ 0 };
  mutable std::uint64_t                      m_Clock{ 0 };
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
