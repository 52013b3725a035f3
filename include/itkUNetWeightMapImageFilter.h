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
#ifndef itkUNetWeightMapImageFilter_h
#define itkUNetWeightMapImageFilter_h

#include "itkUNetWholeImageFilter.h"
#include "itkUNetNearestCells.h"

namespace itk
{

/** \class UNetWeightMapImageFilter
 * \brief The U-Net paper's pixel-wise loss weights, which make a network learn the thin background between touching
 * cells.
 *
 * Input: an instance label image (0 = background, each cell its own positive label; labels need not be
 * consecutive). Output:
 *
 *   w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))   on background voxels,
 *   w(x) = w_c(x)                                                on cell voxels,
 *
 * d1 and d2 being the distances to the nearest and the second-nearest cell (Ronneberger et al. 2015, eq. 2). The
 * separation term applies to background voxels only, as in the paper: it marks the gaps between cells, and a cell
 * voxel lies in no gap. Where fewer than two cells exist, d2 is undefined and the separation term is 0: there is
 * nothing to separate.
 *
 * Distances are in voxels, or in physical units along the image axes with UseImageSpacing (sigma then in the same
 * units). w_c balances the class frequencies: with BalanceClasses (default) w_c = N / (K N_c), N voxels of which N_c
 * are of x's class (background or cell) and K the number of classes present (1 or 2), so that each present class
 * weighs N / K in total (an image of one class gets 1 everywhere). Without BalanceClasses, w_c is BackgroundWeight or
 * ForegroundWeight.
 *
 * Distances beyond sigma * sqrt(2 ln(w0 / Tolerance)) are not computed (see UNetNearestCells): the separation term
 * they would give is below Tolerance (default 1e-6), which bounds the error of the output.
 *
 * The filter needs the whole image (cells anywhere can be nearest, and w_c counts every voxel), so it requests and
 * produces the largest possible region.
 *
 * \ingroup UNetSegmentation
 */
template <typename TLabelImage, typename TWeightImage = Image<float, TLabelImage::ImageDimension>>
class ITK_TEMPLATE_EXPORT UNetWeightMapImageFilter : public UNetWholeImageFilter<TLabelImage, TWeightImage>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(UNetWeightMapImageFilter);

  using Self = UNetWeightMapImageFilter;
  using Superclass = UNetWholeImageFilter<TLabelImage, TWeightImage>;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;

  itkNewMacro(Self);
  itkTypeMacro(UNetWeightMapImageFilter, UNetWholeImageFilter);

  using LabelImageType = TLabelImage;
  using LabelType = typename LabelImageType::PixelType;
  using WeightImageType = TWeightImage;
  using WeightType = typename WeightImageType::PixelType;

  static_assert(std::is_integral<LabelType>::value, "Instance labels must have an integer pixel type.");
  static_assert(std::is_floating_point<WeightType>::value, "Weights must have a floating-point pixel type.");

  /** Height of the separation term (default 10, as in the paper). */
  itkSetMacro(W0, double);
  itkGetConstMacro(W0, double);

  /** Width of the separation term (default 5 voxels, as in the paper). */
  itkSetMacro(Sigma, double);
  itkGetConstMacro(Sigma, double);

  /** Measure distances (and Sigma) in physical units rather than voxels (default off). */
  itkSetMacro(UseImageSpacing, bool);
  itkGetConstMacro(UseImageSpacing, bool);
  itkBooleanMacro(UseImageSpacing);

  /** w_c from the class frequencies (default on), or from BackgroundWeight and ForegroundWeight. */
  itkSetMacro(BalanceClasses, bool);
  itkGetConstMacro(BalanceClasses, bool);
  itkBooleanMacro(BalanceClasses);
  itkSetMacro(BackgroundWeight, double);
  itkGetConstMacro(BackgroundWeight, double);
  itkSetMacro(ForegroundWeight, double);
  itkGetConstMacro(ForegroundWeight, double);

  /** Largest error the distance truncation may put on the separation term (default 1e-6). */
  itkSetMacro(Tolerance, double);
  itkGetConstMacro(Tolerance, double);

  /** Distance beyond which the separation term is below Tolerance and distances are not computed. */
  double
  GetTruncationDistance() const;

protected:
  UNetWeightMapImageFilter() = default;
  ~UNetWeightMapImageFilter() override = default;

  void
  VerifyPreconditions() ITKv5_CONST override;

  void
  GenerateData() override;

  void
  PrintSelf(std::ostream & os, Indent indent) const override;

private:
  double m_W0{ 10.0 };
  double m_Sigma{ 5.0 };
  bool   m_UseImageSpacing{ false };
  bool   m_BalanceClasses{ true };
  double m_BackgroundWeight{ 1.0 };
  double m_ForegroundWeight{ 1.0 };
  double m_Tolerance{ 1e-6 };
};

} // end namespace itk

#ifndef ITK_MANUAL_INSTANTIATION
#  include "itkUNetWeightMapImageFilter.hxx"
#endif

#endif // itkUNetWeightMapImageFilter_h
