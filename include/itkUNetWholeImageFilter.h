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
 * \sa UNetCellLabelImageFilter, UNetCellSeparationImageFilter, UNetTrainingTargetImageFilter, UNetWeightMapImageFilter
 * \ingroup UNetSegmentation
 */
template <typename TInputImage, typename TOutputImage>
class ITK_TEMPLATE_EXPORT UNetWholeImageFilter : public ImageToImageFilter<TInputImage, TOutputImage>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(UNetWholeImageFilter);

  // Standard class type aliases, documented one by one: Doxygen does not hand a member group's documentation on to
  // the template instances of this class that its subclasses' base class specifications make.
  /** This class. */
  using Self = UNetWholeImageFilter;
  /** The class this class refines. */
  using Superclass = ImageToImageFilter<TInputImage, TOutputImage>;
  /** Smart pointer to this class. */
  using Pointer = SmartPointer<Self>;
  /** Smart pointer to this class, const. */
  using ConstPointer = SmartPointer<const Self>;

  /** Run-time type information (and related methods). */
  itkTypeMacro(UNetWholeImageFilter, ImageToImageFilter);

protected:
  UNetWholeImageFilter() = default;
  ~UNetWholeImageFilter() override = default;

  /** Requests the input's largest possible region. */
  void
  GenerateInputRequestedRegion() override
  {
    Superclass::GenerateInputRequestedRegion();
    if (auto * input = const_cast<TInputImage *>(this->GetInput()))
    {
      input->SetRequestedRegionToLargestPossibleRegion();
    }
  }

  /** Enlarges the output's requested region to its largest possible region. */
  void
  EnlargeOutputRequestedRegion(DataObject * output) override
  {
    Superclass::EnlargeOutputRequestedRegion(output);
    output->SetRequestedRegionToLargestPossibleRegion();
  }
};

} // end namespace itk

#endif // itkUNetWholeImageFilter_h
