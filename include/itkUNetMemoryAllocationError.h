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
#ifndef itkUNetMemoryAllocationError_h
#define itkUNetMemoryAllocationError_h

#include "itkMacro.h"

#include <string>

namespace itk
{
namespace unet_detail
{

/** Throws ITK's MemoryAllocationError with `description`: the one way this module reports running, or being about
 * to run, out of memory, so that callers can catch that apart from other errors. */
[[noreturn]] inline void
ThrowMemoryAllocationError(const char * file, unsigned int line, const std::string & description)
{
  throw MemoryAllocationError(file, line, description, ITK_LOCATION);
}

} // end namespace unet_detail
} // end namespace itk

#endif // itkUNetMemoryAllocationError_h
