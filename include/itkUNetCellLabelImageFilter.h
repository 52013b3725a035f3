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
#ifndef itkUNetCellLabelImageFilter_h
#define itkUNetCellLabelImageFilter_h

#include "itkUNetWholeImageFilter.h"

namespace itk
{

/** \class UNetCellLabelImageFilter
 * \brief Instance labels from a binary cell mask, for UNetWeightMapImageFilter and UNetTrainingTargetImageFilter.
 *
 * Voxels at or above ForegroundThreshold (default 1) are cell voxels; each connected set of them becomes a cell
 * with its own label 1, 2, ... (face connectivity, or FullyConnected). A mini-pipeline of ITK's
 * BinaryThresholdImageFilter and ConnectedComponentImageFilter does the work: this filter only bundles them, so that
 * users with binary masks (and Python users, for whom those filters may not be wrapped) reach the companions in one
 * step.
 *
 * \sa UNetWeightMapImageFilter, UNetTrainingTargetImageFilter, ConnectedComponentImageFilter
 * \ingroup UNetSegmentation
 */
template <typename TMaskImage, typename TLabelImage = Image<unsigned long, TMaskImage::ImageDimension>>
class ITK_TEMPLATE_EXPORT UNetCellLabelImageFilter : public UNetWholeImageFilter<TMaskImage, TLabelImage>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(UNetCellLabelImageFilter);

  /** Standard class type aliases. */
  /** @{ */
  using Self = UNetCellLabelImageFilter;
  using Superclass = UNetWholeImageFilter<TMaskImage, TLabelImage>;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;
  /** @} */

  /** Method for creation through the object factory. */
  itkNewMacro(Self);

  /** Run-time type information (and related methods). */
  itkTypeMacro(UNetCellLabelImageFilter, UNetWholeImageFilter);

  /** Image type aliases: the binary (or any scalar) mask in, the instance labels out. */
  /** @{ */
  using MaskImageType = TMaskImage;
  using MaskPixelType = typename MaskImageType::PixelType;
  using LabelImageType = TLabelImage;
  /** @} */

  static_assert(std::is_integral<typename LabelImageType::PixelType>::value, "Labels must be of an integer type.");

  /** Set/Get the smallest mask value of a cell voxel (default 1: any non-zero value of an unsigned mask). */
  /** @{ */
  itkSetMacro(ForegroundThreshold, MaskPixelType);
  itkGetConstMacro(ForegroundThreshold, MaskPixelType);
  /** @} */

  /** Set/Get whether voxels connect through their edges and corners too, not only their faces (default off). */
  /** @{ */
  itkSetMacro(FullyConnected, bool);
  itkGetConstMacro(FullyConnected, bool);
  itkBooleanMacro(FullyConnected);
  /** @} */

  /** Number of cells found by the last update. */
  itkGetConstMacro(NumberOfCells, SizeValueType);

protected:
  UNetCellLabelImageFilter() = default;
  ~UNetCellLabelImageFilter() override = default;

  /** Runs the mini-pipeline (BinaryThresholdImageFilter at ForegroundThreshold, then ConnectedComponentImageFilter) on
   * this filter's work units, grafted onto this filter's output, and counts the cells. */
  void
  GenerateData() override;

  /** Prints the settings and NumberOfCells. */
  void
  PrintSelf(std::ostream & os, Indent indent) const override;

private:
  MaskPixelType m_ForegroundThreshold{ 1 };
  bool          m_FullyConnected{ false };
  SizeValueType m_NumberOfCells{ 0 };
};

} // end namespace itk

#ifndef ITK_MANUAL_INSTANTIATION
#  include "itkUNetCellLabelImageFilter.hxx"
#endif

#endif // itkUNetCellLabelImageFilter_h
