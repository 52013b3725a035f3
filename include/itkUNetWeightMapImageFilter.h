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
 * cells, with the options of the U-Net authors' own tool (Falk et al. 2019).
 *
 * Input: an instance label image (0 = background, each cell its own positive label; labels need not be
 * consecutive; optionally an IgnoreLabel for unannotated voxels). Output:
 *
 *   w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))   on background voxels,
 *   w(x) = w_c(x)                                                on cell voxels,
 *   w(x) = 0                                                     on ignored voxels,
 *
 * d1 and d2 being the distances to the nearest and the second-nearest cell (Ronneberger et al. 2015, eq. 2). The
 * separation term applies to background voxels only, as in the paper: it marks the gaps between cells, and a cell
 * voxel lies in no gap. Where fewer than two cells exist, d2 is undefined and the separation term is 0: there is
 * nothing to separate.
 *
 * w_c is the class weight: with BalanceClasses (default) w_c = N / (K N_c), N annotated (not ignored) voxels of which
 * N_c are of x's class (background or cell) and K the number of classes present (1 or 2), so that each present
 * class weighs N / K in total (an image of one class gets 1 everywhere). Without BalanceClasses, w_c is
 * BackgroundWeight or ForegroundWeight (Falk et al.'s foregroundBackgroundRatio is BackgroundWeight with
 * ForegroundWeight 1). With ClassWeightSigma > 0, the background's class weight rises smoothly to the foreground's
 * towards the cells, as in Falk et al.:
 *
 *   w_c(x) = w_b + (w_f - w_b) * exp(-d1(x)^2 / (2 ClassWeightSigma^2))   on background voxels.
 *
 * With Gap > 0 (default 0), a cell voxel within Gap of another cell is background here, as
 * UNetTrainingTargetImageFilter with the same Gap and BorderValue = BackgroundValue writes it: the voxels that split
 * touching cells get the background's weights, separation term included (d1 = 0, d2 the distance to the other
 * cell), and count as background for the class balancing, as in Falk et al.'s tool, which turns the pixels where
 * two instances touch into background.
 *
 * Voxels with the IgnoreLabel (default 0: none) are unannotated: they get weight 0, take no part in
 * the class balancing, and are neither cell nor background for the distances. Partially annotated images can be
 * used this way.
 *
 * Distances are in voxels, or in physical units along the image axes with UseImageSpacing (Sigma,
 * ClassWeightSigma and Gap then in the same units: micrometres for a microscope image with its spacing in micrometres).
 *
 * Distances beyond sigma * sqrt(2 ln(w0 / Tolerance)) are not computed for the separation term (see
 * unet_detail::NearestCells): the term they would give is below Tolerance (default 1e-6), which bounds the error of the
 * output. d1 in the class-weight transition is exact everywhere.
 *
 * The filter needs the whole image (cells anywhere can be nearest, and w_c counts every voxel), so it requests and
 * produces the largest possible region. It runs on its multithreader's NumberOfWorkUnits pieces of the image and
 * reports progress as they finish.
 *
 * \sa UNetTrainingTargetImageFilter, UNetCellLabelImageFilter
 * \ingroup UNetSegmentation
 */
template <typename TLabelImage, typename TWeightImage = Image<float, TLabelImage::ImageDimension>>
class ITK_TEMPLATE_EXPORT UNetWeightMapImageFilter : public UNetWholeImageFilter<TLabelImage, TWeightImage>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(UNetWeightMapImageFilter);

  /** Standard class type aliases. */
  /** @{ */
  using Self = UNetWeightMapImageFilter;
  using Superclass = UNetWholeImageFilter<TLabelImage, TWeightImage>;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;
  /** @} */

  /** Method for creation through the object factory. */
  itkNewMacro(Self);

  /** Run-time type information (and related methods). */
  itkTypeMacro(UNetWeightMapImageFilter, UNetWholeImageFilter);

  /** Image type aliases: the instance labels in, the weights out. */
  /** @{ */
  using LabelImageType = TLabelImage;
  using LabelType = typename LabelImageType::PixelType;
  using WeightImageType = TWeightImage;
  using WeightType = typename WeightImageType::PixelType;
  using RegionType = typename LabelImageType::RegionType;
  using IndexType = typename LabelImageType::IndexType;
  /** @} */
  /** Spatial dimension of the images. */
  static constexpr unsigned int ImageDimension = LabelImageType::ImageDimension;

  static_assert(std::is_integral<LabelType>::value, "Instance labels must have an integer pixel type.");
  static_assert(std::is_floating_point<WeightType>::value, "Weights must have a floating-point pixel type.");

  /** Set/Get the height of the separation term, w0 (default 10, as in the paper). */
  /** @{ */
  itkSetMacro(W0, double);
  itkGetConstMacro(W0, double);
  /** @} */

  /** Set/Get the width of the separation term, sigma (default 5 voxels, as in the paper). */
  /** @{ */
  itkSetMacro(Sigma, double);
  itkGetConstMacro(Sigma, double);
  /** @} */

  /** Set/Get whether distances (and Sigma, ClassWeightSigma and Gap) are in physical units rather than voxels
   * (default off). */
  /** @{ */
  itkSetMacro(UseImageSpacing, bool);
  itkGetConstMacro(UseImageSpacing, bool);
  itkBooleanMacro(UseImageSpacing);
  /** @} */

  /** Set/Get whether w_c comes from the class frequencies (default on), or from BackgroundWeight and
   * ForegroundWeight. */
  /** @{ */
  itkSetMacro(BalanceClasses, bool);
  itkGetConstMacro(BalanceClasses, bool);
  itkBooleanMacro(BalanceClasses);
  /** @} */
  /** Set/Get w_c of background voxels without BalanceClasses (default 1). */
  /** @{ */
  itkSetMacro(BackgroundWeight, double);
  itkGetConstMacro(BackgroundWeight, double);
  /** @} */
  /** Set/Get w_c of cell voxels without BalanceClasses (default 1). */
  /** @{ */
  itkSetMacro(ForegroundWeight, double);
  itkGetConstMacro(ForegroundWeight, double);
  /** @} */

  /** Set/Get the width of the background class weight's smooth rise to the foreground's towards the cells (Falk et
   * al.'s sigma1; default 0: no transition, the background class weight everywhere on the background). */
  /** @{ */
  itkSetMacro(ClassWeightSigma, double);
  itkGetConstMacro(ClassWeightSigma, double);
  /** @} */

  /** Set/Get the Gap: cell voxels within this distance of another cell are background, as in
   * UNetTrainingTargetImageFilter's target with the same Gap (default 0: none; 1.5 is the target filter's default). */
  /** @{ */
  itkSetMacro(Gap, double);
  itkGetConstMacro(Gap, double);
  /** @} */

  /** Set/Get the label of unannotated voxels: weight 0, no part in the class balancing or the distances (default 0:
   * none, since 0 is the background). It may be negative. */
  /** @{ */
  itkSetMacro(IgnoreLabel, LabelType);
  itkGetConstMacro(IgnoreLabel, LabelType);
  /** @} */

  /** Set/Get the largest error the distance truncation may put on the separation term (default 1e-6). */
  /** @{ */
  itkSetMacro(Tolerance, double);
  itkGetConstMacro(Tolerance, double);
  /** @} */

  /** Distance beyond which the separation term is below Tolerance and distances are not computed. */
  double
  GetTruncationDistance() const;

protected:
  UNetWeightMapImageFilter() = default;
  ~UNetWeightMapImageFilter() override = default;

  /** Sigma must be positive and finite; W0, ClassWeightSigma and Gap non-negative and finite; Tolerance positive; and,
   * without BalanceClasses, BackgroundWeight and ForegroundWeight non-negative. */
  void
  VerifyPreconditions() ITKv5_CONST override;

  /** Finds the distances to the nearest and second-nearest cells up to the truncation distance (and Gap; to the
   * nearest everywhere with ClassWeightSigma), with unet_detail::NearestCells; counts the classes; then writes each
   * voxel's weight, on the multithreader's work units. */
  void
  GenerateData() override;

  /** Prints the settings. */
  void
  PrintSelf(std::ostream & os, Indent indent) const override;

private:
  using NearestCellsType = unet_detail::NearestCells<LabelImageType>;

  /** The weights w_c of background and cells, given or balanced. */
  struct ClassWeights
  {
    double Background;
    double Foreground;
  };

  /** Whether cell voxel `v` splits touching cells: another cell lies within Gap (for a cell voxel the nearest cell is
   * its own, so the second nearest is the nearest other cell). */
  bool
  SplitsCells(const NearestCellsType & nearest, SizeValueType v) const
  {
    return m_Gap > 0.0 && static_cast<double>(nearest.GetSecondNearestSquaredDistances()[v]) <= m_Gap * m_Gap;
  }

  /** The class weights: BackgroundWeight and ForegroundWeight, or, with BalanceClasses, N / (K N_c) over the
   * annotated voxels, those that split cells counted as background. */
  ClassWeights
  ComputeClassWeights(const NearestCellsType & nearest) const;

  /** Writes the weight of every voxel of `piece`. */
  void
  WeighRegion(const RegionType & piece, const NearestCellsType & nearest, const ClassWeights & classWeights);

  /** The weight of background (or cell-splitting) voxel `v`: its class weight, shifted towards the cells' within
   * ClassWeightSigma, plus the border term w0 exp(-(d1 + d2)^2 / (2 sigma^2)). */
  double
  BackgroundVoxelWeight(const NearestCellsType & nearest, SizeValueType v, const ClassWeights & classWeights) const;

  double    m_W0{ 10.0 };
  double    m_Sigma{ 5.0 };
  bool      m_UseImageSpacing{ false };
  bool      m_BalanceClasses{ true };
  double    m_BackgroundWeight{ 1.0 };
  double    m_ForegroundWeight{ 1.0 };
  double    m_ClassWeightSigma{ 0.0 };
  double    m_Gap{ 0.0 };
  LabelType m_IgnoreLabel{ 0 };
  double    m_Tolerance{ 1e-6 };
};

} // end namespace itk

#ifndef ITK_MANUAL_INSTANTIATION
#  include "itkUNetWeightMapImageFilter.hxx"
#endif

#endif // itkUNetWeightMapImageFilter_h
