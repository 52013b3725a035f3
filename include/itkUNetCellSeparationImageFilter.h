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
#ifndef itkUNetCellSeparationImageFilter_h
#define itkUNetCellSeparationImageFilter_h

#include "itkUNetModel.h"
#include "itkUNetWholeImageFilter.h"
#include "itkVectorImage.h"

namespace itk
{

/** \class UNetCellSeparationImageFilter
 * \brief Cell instances from a U-Net's class probabilities: confident cell cores grown by a seeded watershed into
 * every voxel the network finds likely enough to be cell, with a one-voxel line left where two cells meet.
 *
 * The network's own decision (the most probable class, UNetSegmentationImageFilter's label output) merges two cells
 * wherever it leaves a gap in the membrane between them, and draws membranes as wide as its uncertainty. This filter
 * separates instead: the seeds are the connected sets of voxels whose cell probability is at least SeedThreshold
 * (face connectivity, or FullyConnected); each grows, in the order of decreasing cell probability, through the voxels
 * whose cell probability is at least CellThreshold, until it meets another (ITK's
 * MorphologicalWatershedFromMarkersImageFilter on 1 - p, with its watershed line marked). So a membrane the network
 * is not sure of still separates two cells if a valley of probability runs between their cores, and the membrane in
 * the output is the line where they meet, one voxel wide, where the network's is wider.
 *
 * Input: the probability image of UNetSegmentationImageFilter (GetProbabilityOutput(): a VectorImage<float> with one
 * probability per class); CellClass selects the cell class's component (default 1). Output: instance labels 1, 2, ...
 * for the cells (one per seed), 0 for the other voxels (membranes, background, the lines between cells), with the
 * input's geometry. A mini-pipeline does the work (ITK's VectorIndexSelectionCastImageFilter, this module's
 * UNetCellLabelImageFilter for the seeds, ITK's InvertIntensityImageFilter,
 * MorphologicalWatershedFromMarkersImageFilter, BinaryThresholdImageFilter and MaskImageFilter), which reports its
 * progress as this filter's.
 *
 * Defaults: SeedThreshold 0.5 keeps the network's own cells (its decision) as the seeds; a higher one splits more of
 * the cells the network merges through gaps, but a cell with no voxel that sure joins a neighbour. CellThreshold 0.2
 * misclassifies the fewest voxels of the bundled ISBI 2012 model's training slices (docs/model-card.md).
 *
 * \sa UNetSegmentationImageFilter, UNetCellLabelImageFilter, MorphologicalWatershedFromMarkersImageFilter
 * \ingroup UNetSegmentation
 */
template <typename TProbabilityImage = VectorImage<float, 2>,
          typename TLabelImage = Image<unsigned long, TProbabilityImage::ImageDimension>>
class ITK_TEMPLATE_EXPORT UNetCellSeparationImageFilter : public UNetWholeImageFilter<TProbabilityImage, TLabelImage>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(UNetCellSeparationImageFilter);

  /** Standard class type aliases. */
  /** @{ */
  using Self = UNetCellSeparationImageFilter;
  using Superclass = UNetWholeImageFilter<TProbabilityImage, TLabelImage>;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;
  /** @} */

  /** Method for creation through the object factory. */
  itkNewMacro(Self);

  /** Run-time type information (and related methods). */
  itkTypeMacro(UNetCellSeparationImageFilter, UNetWholeImageFilter);

  /** Spatial dimension of the images. */
  static constexpr unsigned int ImageDimension = TProbabilityImage::ImageDimension;

  /** Image type aliases: the class probabilities in, the cell labels out. */
  /** @{ */
  using ProbabilityImageType = TProbabilityImage;
  using LabelImageType = TLabelImage;
  /** @} */
  static_assert(std::is_integral<typename LabelImageType::PixelType>::value, "Labels must be of an integer type.");

  /** Set/Get the component of the input that holds the cell class's probability (default 1). */
  /** @{ */
  void
  SetCellClass(unsigned int cellClass);
  itkGetConstMacro(CellClass, unsigned int);
  /** @} */

  /** Set/Get the smallest cell probability of a seed voxel (default 0.5). */
  /** @{ */
  void
  SetSeedThreshold(double threshold);
  itkGetConstMacro(SeedThreshold, double);
  /** @} */

  /** Set/Get the smallest cell probability of a voxel the seeds grow into (default 0.2; at most SeedThreshold). */
  /** @{ */
  void
  SetCellThreshold(double threshold);
  itkGetConstMacro(CellThreshold, double);
  /** @} */

  /** Set/Get whether voxels connect through their edges and corners too, not only their faces, for the seeds and the
   * watershed (default off: the lines between cells then separate them face-connectedly, as the ISBI 2012 metrics
   * count). */
  /** @{ */
  itkSetMacro(FullyConnected, bool);
  itkGetConstMacro(FullyConnected, bool);
  itkBooleanMacro(FullyConnected);
  /** @} */

  /** Takes CellClass, SeedThreshold and CellThreshold from `model`'s model card (UNetModelCard), where it has them:
   * the settings chosen for that network on its training images. `model` must be loaded. A setting the caller set
   * (before or after this call) wins over the card's; PrintSelf says where each value came from. */
  void
  SetParametersFromModel(const UNetModel * model);

  /** Number of cells (seeds) found by the last update. */
  itkGetConstMacro(NumberOfCells, SizeValueType);

protected:
  UNetCellSeparationImageFilter() = default;
  ~UNetCellSeparationImageFilter() override = default;

  /** SeedThreshold must be in (0, 1] and CellThreshold in (0, SeedThreshold]. */
  void
  VerifyPreconditions() ITKv5_CONST override;

  /** The input must have a CellClass component. */
  void
  VerifyInputInformation() ITKv5_CONST override;

  /** Runs the mini-pipeline (see the class description) on this filter's work units, grafted onto this filter's
   * output, and counts the seeds. */
  void
  GenerateData() override;

  /** Prints the settings and NumberOfCells. */
  void
  PrintSelf(std::ostream & os, Indent indent) const override;

private:
  /** Where a setting's value came from: the caller's wins over the card's, which wins over the default. */
  enum class SettingSource : uint8_t
  {
    Default,
    ModelCard,
    Caller
  };
  static const char *
  ToString(SettingSource source);

  /** Sets `setting` to `value` from `source`, unless the caller has set it and `source` is the card. */
  template <typename TValue>
  void
  SetFrom(SettingSource source, TValue & setting, SettingSource & settingsSource, const TValue & value);

  unsigned int  m_CellClass{ 1 };
  double        m_SeedThreshold{ 0.5 };
  double        m_CellThreshold{ 0.2 };
  SettingSource m_CellClassSource{ SettingSource::Default };
  SettingSource m_SeedThresholdSource{ SettingSource::Default };
  SettingSource m_CellThresholdSource{ SettingSource::Default };
  bool          m_FullyConnected{ false };
  SizeValueType m_NumberOfCells{ 0 };
};

} // end namespace itk

#ifndef ITK_MANUAL_INSTANTIATION
#  include "itkUNetCellSeparationImageFilter.hxx"
#endif

#endif // itkUNetCellSeparationImageFilter_h
