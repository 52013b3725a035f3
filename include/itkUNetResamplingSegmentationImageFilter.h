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
#ifndef itkUNetResamplingSegmentationImageFilter_h
#define itkUNetResamplingSegmentationImageFilter_h

#include "itkUNetSegmentationImageFilter.h"

namespace itk
{

/** \class UNetResamplingSegmentationImageFilter
 * \brief Segments an image at the voxel spacing the network was trained at and returns the result on the input's
 * own grid: a mini-pipeline of ITK's ResampleImageFilter, UNetSegmentationImageFilter and ResampleImageFilter again.
 *
 * The input is resampled (linear or cubic B-spline interpolation, in physical space) to SegmentationSpacing, on a grid
 * with the input's direction that covers the same physical extent; segmented by the inner UNetSegmentationImageFilter
 * (GetSegmenter(), for every other setting); its class probabilities are resampled back onto the input's exact grid
 * (origin, spacing, direction) by linear interpolation, the nearest ones where an input voxel lies past the outermost
 * centres of the network's grid; and each voxel's label is the most probable class there. A SegmentationSpacing of 0
 * along every axis (the default) takes the spacing from the model card (UNetModelCard) when it states a physical one,
 * and otherwise segments the input on its own grid, which is then exactly UNetSegmentationImageFilter.
 *
 * Resampling reads the whole input and makes the whole output (the inner segmentation runs in one piece): the memory
 * is that of the input, the resampled input, and the probabilities on both grids.
 *
 * \sa UNetSegmentationImageFilter, UNetModelCard, ResampleImageFilter
 * \ingroup UNetSegmentation
 */
template <typename TInputImage, typename TOutputImage = Image<unsigned char, TInputImage::ImageDimension>>
class ITK_TEMPLATE_EXPORT UNetResamplingSegmentationImageFilter : public ImageToImageFilter<TInputImage, TOutputImage>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(UNetResamplingSegmentationImageFilter);

  /** Standard class type aliases. */
  /** @{ */
  using Self = UNetResamplingSegmentationImageFilter;
  using Superclass = ImageToImageFilter<TInputImage, TOutputImage>;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;
  /** @} */

  /** Method for creation through the object factory. */
  itkNewMacro(Self);

  /** Run-time type information (and related methods). */
  itkTypeMacro(UNetResamplingSegmentationImageFilter, ImageToImageFilter);

  /** Spatial dimension of the images (2 or 3). */
  static constexpr unsigned int ImageDimension = TInputImage::ImageDimension;

  /** Image and setting types. */
  /** @{ */
  using InputImageType = TInputImage;
  using OutputImageType = TOutputImage;
  using SegmenterType = UNetSegmentationImageFilter<TInputImage, TOutputImage>;
  using ProbabilityImageType = typename SegmenterType::ProbabilityImageType;
  using SpacingType = typename InputImageType::SpacingType;
  using InterpolationEnum = UNetResamplingSegmentationImageFilterEnums::Interpolation;
  using DataObjectIdentifierType = typename Superclass::DataObjectIdentifierType;
  /** @} */

  /** The inner segmentation filter, for its settings (model, tiles, normalisation, ...). */
  /** @{ */
  itkGetModifiableObjectMacro(Segmenter, SegmenterType);
  /** @} */

  /** Set/Get the spacing to segment at, in the input's spacing unit; 0 along every axis (default): the model card's
   * physical spacing, or none. */
  /** @{ */
  itkSetMacro(SegmentationSpacing, SpacingType);
  itkGetConstReferenceMacro(SegmentationSpacing, SpacingType);
  /** @} */

  /** Set/Get the unit of the input's spacing: "mm" (default: ITK's medical image readers and 3D Slicer), "um" or "nm"
   * (microscopy). The model card's spacing is converted from its own unit to this one. */
  /** @{ */
  itkSetStringMacro(InputSpacingUnit);
  itkGetStringMacro(InputSpacingUnit);
  /** @} */

  /** Set/Get how the input is resampled (Linear, default, or BSpline). */
  /** @{ */
  itkSetEnumMacro(Interpolation, InterpolationEnum);
  itkGetEnumMacro(Interpolation, InterpolationEnum);
  /** @} */

  /** The spacing the last update segmented at (the input's when it did not resample); valid once the output
   * information is generated. */
  itkGetConstReferenceMacro(AppliedSpacing, SpacingType);

  /** Whether the last update resampled (its AppliedSpacing differs from the input's spacing). */
  itkGetConstMacro(Resampled, bool);

  /** Output 0: the label map on the input's grid. */
  OutputImageType *
  GetLabelOutput()
  {
    return this->GetOutput(0);
  }

  /** The named output "Probabilities": per-class probabilities on the input's grid. */
  ProbabilityImageType *
  GetProbabilityOutput();

  /** Includes the inner segmenter's and its model's modification times. */
  ModifiedTimeType
  GetMTime() const override
  {
    return std::max(Superclass::GetMTime(), m_Segmenter->GetMTime());
  }

protected:
  UNetResamplingSegmentationImageFilter();
  ~UNetResamplingSegmentationImageFilter() override = default;

  using Superclass::MakeOutput;
  /** Makes the "Probabilities" output a VectorImage<float>. */
  DataObject::Pointer
  MakeOutput(const DataObjectIdentifierType & name) override;

  /** Loads the model (through the inner segmenter), decides the spacing, and gives the outputs the input's grid and the
   * probabilities one component per class. */
  void
  GenerateOutputInformation() override;

  /** Requests the whole input: resampling maps every output voxel to a neighbourhood of the input. */
  void
  GenerateInputRequestedRegion() override;

  /** Makes the whole output. */
  void
  EnlargeOutputRequestedRegion(DataObject * output) override;

  /** Runs the mini-pipeline (resample, segment, resample back, labels), reporting its progress. */
  void
  GenerateData() override;

  /** Prints the settings, the inner segmenter and the spacing applied. */
  void
  PrintSelf(std::ostream & os, Indent indent) const override;

private:
  /** `input` resampled onto `grid`'s grid, by the interpolation asked for (channel by channel for cubic B-splines
   * of a multi-component image). */
  typename InputImageType::Pointer
  ResampleInput(const InputImageType * input, const InputImageType * grid) const;

  /** ResampleInput for cubic B-splines of a multi-component image: ITK's B-spline interpolates scalar images. */
  typename InputImageType::Pointer
  ResampleChannelsCubically(const InputImageType * input, const InputImageType * grid) const;

  /** The grid at `spacing` with the input's direction that covers the input's physical extent. */
  typename InputImageType::Pointer
  MakeSegmentationGrid(const InputImageType * input, const SpacingType & spacing) const;

  typename SegmenterType::Pointer m_Segmenter{};
  SpacingType                     m_SegmentationSpacing{ 0.0 };
  std::string                     m_InputSpacingUnit{ "mm" };
  InterpolationEnum               m_Interpolation{ InterpolationEnum::Linear };
  SpacingType                     m_AppliedSpacing{ 0.0 };
  bool                            m_Resampled{ false };
};

} // end namespace itk

#ifndef ITK_MANUAL_INSTANTIATION
#  include "itkUNetResamplingSegmentationImageFilter.hxx"
#endif

#endif // itkUNetResamplingSegmentationImageFilter_h
