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
#ifndef itkUNetWeightMapImageFilter_hxx
#define itkUNetWeightMapImageFilter_hxx

#include "itkUNetWeightMapImageFilter.h"

#include "itkProgressTransformer.h"

#include <algorithm>
#include <cmath>

namespace itk
{

template <typename TLabelImage, typename TWeightImage>
double
UNetWeightMapImageFilter<TLabelImage, TWeightImage>::GetTruncationDistance() const
{
  // w0 * exp(-D^2 / (2 sigma^2)) = Tolerance at D; d1 + d2 > D whenever d2 > D.
  return m_W0 > m_Tolerance ? m_Sigma * std::sqrt(2.0 * std::log(m_W0 / m_Tolerance)) : 0.0;
}

template <typename TLabelImage, typename TWeightImage>
void
UNetWeightMapImageFilter<TLabelImage, TWeightImage>::VerifyPreconditions() ITKv5_CONST
{
  Superclass::VerifyPreconditions();
  if (!(m_Sigma > 0.0) || !std::isfinite(m_Sigma))
  {
    itkExceptionMacro("Sigma must be positive and finite; got " << m_Sigma << '.');
  }
  if (!(m_W0 >= 0.0) || !std::isfinite(m_W0))
  {
    itkExceptionMacro("W0 must be non-negative and finite; got " << m_W0 << '.');
  }
  if (!(m_ClassWeightSigma >= 0.0) || !std::isfinite(m_ClassWeightSigma))
  {
    itkExceptionMacro("ClassWeightSigma must be non-negative and finite (0: no transition); got " << m_ClassWeightSigma
                                                                                                  << '.');
  }
  if (!(m_Gap >= 0.0) || !std::isfinite(m_Gap))
  {
    itkExceptionMacro("Gap must be non-negative and finite; got " << m_Gap << '.');
  }
  if (!(m_Tolerance > 0.0))
  {
    itkExceptionMacro("Tolerance must be positive; got " << m_Tolerance << '.');
  }
  if (!m_BalanceClasses && (!(m_BackgroundWeight >= 0.0) || !(m_ForegroundWeight >= 0.0)))
  {
    itkExceptionMacro("BackgroundWeight and ForegroundWeight must be non-negative; got "
                      << m_BackgroundWeight << " and " << m_ForegroundWeight << '.');
  }
}

template <typename TLabelImage, typename TWeightImage>
void
UNetWeightMapImageFilter<TLabelImage, TWeightImage>::GenerateData()
{
  this->AllocateOutputs();
  this->GetMultiThreader()->SetNumberOfWorkUnits(this->GetNumberOfWorkUnits());
  const LabelImageType * labels = this->GetInput();
  WeightImageType *      weights = this->GetOutput();

  const bool       transition = m_ClassWeightSigma > 0.0;
  NearestCellsType nearest;
  nearest.SetMaximumDistance(std::max(m_W0 > 0.0 ? this->GetTruncationDistance() : 0.0, m_Gap));
  nearest.SetUseImageSpacing(m_UseImageSpacing);
  nearest.SetNearestEverywhere(transition);
  nearest.SetIgnoreLabel(m_IgnoreLabel);
  {
    ProgressTransformer progress(0.0f, 0.9f, this);
    nearest.Compute(labels, this, progress.GetProcessObject());
  }

  const ClassWeights  classWeights = this->ComputeClassWeights(nearest);
  ProgressTransformer progress(0.9f, 1.0f, this);
  this->GetMultiThreader()->template ParallelizeImageRegion<ImageDimension>(
    weights->GetBufferedRegion(),
    [this, &nearest, &classWeights](const RegionType & piece) { this->WeighRegion(piece, nearest, classWeights); },
    progress.GetProcessObject());
}

template <typename TLabelImage, typename TWeightImage>
auto
UNetWeightMapImageFilter<TLabelImage, TWeightImage>::ComputeClassWeights(const NearestCellsType & nearest) const
  -> ClassWeights
{
  const LabelImageType * labels = this->GetInput();
  const LabelType *      labelBuffer = labels->GetBufferPointer();
  SizeValueType          splittingVoxels = 0;
  if (m_Gap > 0.0)
  {
    for (SizeValueType v = 0; v < labels->GetBufferedRegion().GetNumberOfPixels(); ++v)
    {
      splittingVoxels += labelBuffer[v] != 0 && labelBuffer[v] != m_IgnoreLabel && this->SplitsCells(nearest, v);
    }
  }
  if (!m_BalanceClasses)
  {
    return { m_BackgroundWeight, m_ForegroundWeight };
  }
  // Ignored voxels take no part in the class balancing; voxels that split cells count as background. w_c = N / (K N_c),
  // K the number of classes present: each present class weighs N / K in total.
  const SizeValueType annotatedVoxels =
    labels->GetBufferedRegion().GetNumberOfPixels() - nearest.GetNumberOfIgnoredVoxels();
  const SizeValueType cellVoxels = nearest.GetNumberOfCellVoxels() - splittingVoxels;
  const SizeValueType backgroundVoxels = annotatedVoxels - cellVoxels;
  const double        presentClasses = (backgroundVoxels > 0 ? 1.0 : 0.0) + (cellVoxels > 0 ? 1.0 : 0.0);
  return { backgroundVoxels > 0 ? annotatedVoxels / (presentClasses * backgroundVoxels) : 1.0,
           cellVoxels > 0 ? annotatedVoxels / (presentClasses * cellVoxels) : 1.0 };
}

template <typename TLabelImage, typename TWeightImage>
void
UNetWeightMapImageFilter<TLabelImage, TWeightImage>::WeighRegion(const RegionType &       piece,
                                                                 const NearestCellsType & nearest,
                                                                 const ClassWeights &     classWeights)
{
  const LabelImageType * labels = this->GetInput();
  const LabelType *      labelBuffer = labels->GetBufferPointer();
  WeightType *           weightBuffer = this->GetOutput()->GetBufferPointer();
  for (const IndexType & lineStart : unet_detail::LineStarts(piece))
  {
    const auto first = static_cast<SizeValueType>(labels->ComputeOffset(lineStart));
    for (SizeValueType v = first; v < first + piece.GetSize(0); ++v)
    {
      if (labelBuffer[v] != 0 && labelBuffer[v] == m_IgnoreLabel)
      {
        weightBuffer[v] = 0;
      }
      else if (labelBuffer[v] != 0 && !this->SplitsCells(nearest, v))
      {
        weightBuffer[v] = static_cast<WeightType>(classWeights.Foreground);
      }
      else
      {
        weightBuffer[v] = static_cast<WeightType>(this->BackgroundVoxelWeight(nearest, v, classWeights));
      }
    }
  }
}

template <typename TLabelImage, typename TWeightImage>
double
UNetWeightMapImageFilter<TLabelImage, TWeightImage>::BackgroundVoxelWeight(const NearestCellsType & nearest,
                                                                           SizeValueType            v,
                                                                           const ClassWeights &     classWeights) const
{
  const double nearestSquared = nearest.GetNearestSquaredDistances()[v];
  const double secondSquared = nearest.GetSecondNearestSquaredDistances()[v];
  double       weight = classWeights.Background;
  if (m_ClassWeightSigma > 0.0)
  {
    weight += (classWeights.Foreground - classWeights.Background) *
              std::exp(-nearestSquared / (2.0 * m_ClassWeightSigma * m_ClassWeightSigma));
  }
  if (std::isfinite(secondSquared))
  {
    const double sum = std::sqrt(nearestSquared) + std::sqrt(secondSquared);
    weight += m_W0 * std::exp(-sum * sum / (2.0 * m_Sigma * m_Sigma));
  }
  return weight;
}

template <typename TLabelImage, typename TWeightImage>
void
UNetWeightMapImageFilter<TLabelImage, TWeightImage>::PrintSelf(std::ostream & os, Indent indent) const
{
  Superclass::PrintSelf(os, indent);
  os << indent << "W0: " << m_W0 << std::endl;
  os << indent << "Sigma: " << m_Sigma << std::endl;
  os << indent << "UseImageSpacing: " << (m_UseImageSpacing ? "On" : "Off") << std::endl;
  os << indent << "BalanceClasses: " << (m_BalanceClasses ? "On" : "Off") << std::endl;
  os << indent << "BackgroundWeight: " << m_BackgroundWeight << std::endl;
  os << indent << "ForegroundWeight: " << m_ForegroundWeight << std::endl;
  os << indent << "ClassWeightSigma: " << m_ClassWeightSigma << std::endl;
  os << indent << "Gap: " << m_Gap << std::endl;
  os << indent << "IgnoreLabel: " << static_cast<typename NumericTraits<LabelType>::PrintType>(m_IgnoreLabel)
     << std::endl;
  os << indent << "Tolerance: " << m_Tolerance << std::endl;
}

} // end namespace itk

#endif // itkUNetWeightMapImageFilter_hxx
