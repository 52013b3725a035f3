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
#ifndef itkUNetTrainingTargetImageFilter_h
#define itkUNetTrainingTargetImageFilter_h

#include "itkUNetWholeImageFilter.h"
#include "itkUNetNearestCells.h"

namespace itk
{

/** \class UNetTrainingTargetImageFilter
 * \brief Turns an instance label image into a semantic training target in which touching cells are split by
 * background, as in the U-Net paper's ground truth.
 *
 * A cell voxel becomes a border voxel when a voxel of another cell lies within Gap of it (distance between voxel
 * centres, in voxels or, with UseImageSpacing, physical units). Gap 1 separates face neighbours only; the default
 * 1.5 also separates 2-D diagonal (3-D edge-diagonal) neighbours; 1.8 every 3-D neighbour. Border voxels are written
 * as BorderValue, which is the BackgroundValue unless set (set it to a third value, 2 say, for a three-class
 * target); other cell voxels as ForegroundValue, background as BackgroundValue.
 *
 * Voxels with the IgnoreLabel (default 0: none) are unannotated: they are written as IgnoreValue
 * (default: the output type's largest value, 255 for unsigned char, the value a loss is told to ignore, e.g.
 * PyTorch's CrossEntropyLoss(ignore_index=255)), and are no cell for the Gap test.
 *
 * For users with binary masks: ConnectedComponentImageFilter makes the instance label image this filter takes.
 *
 * The filter needs the whole image and produces the largest possible region. It runs on its multithreader's
 * NumberOfWorkUnits pieces of the image and reports progress as they finish.
 *
 * \sa UNetWeightMapImageFilter, UNetCellLabelImageFilter
 * \ingroup UNetSegmentation
 */
template <typename TLabelImage, typename TOutputImage = Image<unsigned char, TLabelImage::ImageDimension>>
class ITK_TEMPLATE_EXPORT UNetTrainingTargetImageFilter : public UNetWholeImageFilter<TLabelImage, TOutputImage>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(UNetTrainingTargetImageFilter);

  /** Standard class type aliases. */
  /** @{ */
  using Self = UNetTrainingTargetImageFilter;
  using Superclass = UNetWholeImageFilter<TLabelImage, TOutputImage>;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;
  /** @} */

  /** Method for creation through the object factory. */
  itkNewMacro(Self);

  /** Run-time type information (and related methods). */
  itkTypeMacro(UNetTrainingTargetImageFilter, UNetWholeImageFilter);

  /** Image type aliases: the instance labels in, the training target out. */
  /** @{ */
  using LabelImageType = TLabelImage;
  using LabelType = typename LabelImageType::PixelType;
  using OutputImageType = TOutputImage;
  using OutputPixelType = typename OutputImageType::PixelType;
  using RegionType = typename LabelImageType::RegionType;
  using IndexType = typename LabelImageType::IndexType;
  /** @} */
  /** Spatial dimension of the images. */
  static constexpr unsigned int ImageDimension = LabelImageType::ImageDimension;

  static_assert(std::is_integral<LabelType>::value, "Instance labels must have an integer pixel type.");

  /** Set/Get the distance within which a voxel of another cell makes a cell voxel a border voxel (default 1.5). */
  /** @{ */
  itkSetMacro(Gap, double);
  itkGetConstMacro(Gap, double);
  /** @} */

  /** Set/Get whether Gap is in physical units rather than voxels (default off). */
  /** @{ */
  itkSetMacro(UseImageSpacing, bool);
  itkGetConstMacro(UseImageSpacing, bool);
  itkBooleanMacro(UseImageSpacing);
  /** @} */

  /** Set/Get the output value of background voxels (default 0). */
  /** @{ */
  itkSetMacro(BackgroundValue, OutputPixelType);
  itkGetConstMacro(BackgroundValue, OutputPixelType);
  /** @} */
  /** Set/Get the output value of cell voxels that are no border voxels (default 1). */
  /** @{ */
  itkSetMacro(ForegroundValue, OutputPixelType);
  itkGetConstMacro(ForegroundValue, OutputPixelType);
  /** @} */
  /** Set/Get the output value of border voxels (default 0, the BackgroundValue's default; 2, say, for a three-class
   * target). */
  /** @{ */
  itkSetMacro(BorderValue, OutputPixelType);
  itkGetConstMacro(BorderValue, OutputPixelType);
  /** @} */

  /** Set/Get the label of unannotated voxels: written as IgnoreValue, and no cell (default 0: none, since 0 is the
   * background). It may be negative. */
  /** @{ */
  itkSetMacro(IgnoreLabel, LabelType);
  itkGetConstMacro(IgnoreLabel, LabelType);
  /** @} */
  /** Set/Get the output value of unannotated voxels (default: the output type's largest value). */
  /** @{ */
  itkSetMacro(IgnoreValue, OutputPixelType);
  itkGetConstMacro(IgnoreValue, OutputPixelType);
  /** @} */

protected:
  UNetTrainingTargetImageFilter() = default;
  ~UNetTrainingTargetImageFilter() override = default;

  /** Gap must be non-negative and finite. */
  void
  VerifyPreconditions() ITKv5_CONST override;

  /** Finds, for every cell voxel, the distance to the nearest other cell up to Gap (unet_detail::NearestCells), then
   * writes each voxel's target value, on the multithreader's work units. */
  void
  GenerateData() override;

  /** Prints the settings. */
  void
  PrintSelf(std::ostream & os, Indent indent) const override;

private:
  double          m_Gap{ 1.5 };
  bool            m_UseImageSpacing{ false };
  OutputPixelType m_BackgroundValue{ 0 };
  OutputPixelType m_ForegroundValue{ 1 };
  OutputPixelType m_BorderValue{ 0 };
  LabelType       m_IgnoreLabel{ 0 };
  OutputPixelType m_IgnoreValue{ NumericTraits<OutputPixelType>::max() };
};

} // end namespace itk

#ifndef ITK_MANUAL_INSTANTIATION
#  include "itkUNetTrainingTargetImageFilter.hxx"
#endif

#endif // itkUNetTrainingTargetImageFilter_h
