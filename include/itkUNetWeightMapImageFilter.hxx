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

  const bool                                transition = m_ClassWeightSigma > 0.0;
  unet_detail::NearestCells<LabelImageType> nearest;
  nearest.SetMaximumDistance(std::max(m_W0 > 0.0 ? this->GetTruncationDistance() : 0.0, m_Gap));
  nearest.SetUseImageSpacing(m_UseImageSpacing);
  nearest.SetNearestEverywhere(transition);
  nearest.SetIgnoreLabel(m_IgnoreLabel);
  {
    ProgressTransformer progress(0.0f, 0.9f, this);
    nearest.Compute(labels, this, progress.GetProcessObject());
  }

  const LabelType *          labelBuffer = labels->GetBufferPointer();
  WeightType *               weightBuffer = weights->GetBufferPointer();
  const std::vector<float> & nearestSquared = nearest.GetNearestSquaredDistances();
  const std::vector<float> & secondSquared = nearest.GetSecondNearestSquaredDistances();
  const double               gapSquared = m_Gap * m_Gap;
  // A cell voxel splits touching cells when another cell lies within Gap: for a cell voxel the nearest cell is its
  // own, so the second nearest is the nearest other cell.
  const auto splitsCells = [&](SizeValueType v) {
    return m_Gap > 0.0 && static_cast<double>(secondSquared[v]) <= gapSquared;
  };
  SizeValueType splittingVoxels = 0;
  if (m_Gap > 0.0)
  {
    for (SizeValueType v = 0; v < secondSquared.size(); ++v)
    {
      splittingVoxels += labelBuffer[v] != 0 && labelBuffer[v] != m_IgnoreLabel && splitsCells(v);
    }
  }

  // Ignored voxels take no part in the class balancing; voxels that split cells count as background.
  const SizeValueType annotatedVoxels =
    labels->GetBufferedRegion().GetNumberOfPixels() - nearest.GetNumberOfIgnoredVoxels();
  const SizeValueType cellVoxels = nearest.GetNumberOfCellVoxels() - splittingVoxels;
  const SizeValueType backgroundVoxels = annotatedVoxels - cellVoxels;
  double              backgroundWeight = m_BackgroundWeight;
  double              foregroundWeight = m_ForegroundWeight;
  if (m_BalanceClasses)
  {
    // w_c = N / (K N_c), K the number of classes present: each present class weighs N / K in total.
    const double presentClasses = (backgroundVoxels > 0 ? 1.0 : 0.0) + (cellVoxels > 0 ? 1.0 : 0.0);
    backgroundWeight = backgroundVoxels > 0 ? annotatedVoxels / (presentClasses * backgroundVoxels) : 1.0;
    foregroundWeight = cellVoxels > 0 ? annotatedVoxels / (presentClasses * cellVoxels) : 1.0;
  }

  const double twoSigmaSquared = 2.0 * m_Sigma * m_Sigma;
  const double twoClassWeightSigmaSquared = 2.0 * m_ClassWeightSigma * m_ClassWeightSigma;
  const auto   weighPiece = [&](const RegionType & piece) {
    for (const IndexType & lineStart : unet_detail::LineStarts(piece))
    {
      const auto first = static_cast<SizeValueType>(labels->ComputeOffset(lineStart));
      for (SizeValueType v = first; v < first + piece.GetSize(0); ++v)
      {
        if (labelBuffer[v] != 0 && labelBuffer[v] == m_IgnoreLabel)
        {
          weightBuffer[v] = 0;
          continue;
        }
        if (labelBuffer[v] != 0 && !splitsCells(v))
        {
          weightBuffer[v] = static_cast<WeightType>(foregroundWeight);
          continue;
        }
        double weight = backgroundWeight;
        if (transition)
        {
          weight += (foregroundWeight - backgroundWeight) *
                    std::exp(-static_cast<double>(nearestSquared[v]) / twoClassWeightSigmaSquared);
        }
        if (std::isfinite(secondSquared[v]))
        {
          const double sum =
            std::sqrt(static_cast<double>(nearestSquared[v])) + std::sqrt(static_cast<double>(secondSquared[v]));
          weight += m_W0 * std::exp(-sum * sum / twoSigmaSquared);
        }
        weightBuffer[v] = static_cast<WeightType>(weight);
      }
    }
  };
  ProgressTransformer progress(0.9f, 1.0f, this);
  this->GetMultiThreader()->template ParallelizeImageRegion<ImageDimension>(
    weights->GetBufferedRegion(), weighPiece, progress.GetProcessObject());
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
