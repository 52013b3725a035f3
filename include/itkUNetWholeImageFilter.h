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
#ifndef itkUNetWholeImageFilter_h
#define itkUNetWholeImageFilter_h

#include "itkImageToImageFilter.h"

namespace itk
{

/** \class UNetWholeImageFilter
 * \brief Base of the training companions, whose every output voxel may depend on every input voxel (a cell anywhere
 * may be the nearest; class frequencies count the whole image): they request the whole input and produce the whole
 * output.
 *
 * \ingroup UNetSegmentation
 */
template <typename TInputImage, typename TOutputImage>
class ITK_TEMPLATE_EXPORT UNetWholeImageFilter : public ImageToImageFilter<TInputImage, TOutputImage>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(UNetWholeImageFilter);

  using Self = UNetWholeImageFilter;
  using Superclass = ImageToImageFilter<TInputImage, TOutputImage>;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;

  itkTypeMacro(UNetWholeImageFilter, ImageToImageFilter);

protected:
  UNetWholeImageFilter() = default;
  ~UNetWholeImageFilter() override = default;

  void
  GenerateInputRequestedRegion() override
  {
    Superclass::GenerateInputRequestedRegion();
    if (auto * input = const_cast<TInputImage *>(this->GetInput()))
    {
      input->SetRequestedRegionToLargestPossibleRegion();
    }
  }

  void
  EnlargeOutputRequestedRegion(DataObject * output) override
  {
    Superclass::EnlargeOutputRequestedRegion(output);
    output->SetRequestedRegionToLargestPossibleRegion();
  }
};

} // end namespace itk

#endif // itkUNetWholeImageFilter_h
