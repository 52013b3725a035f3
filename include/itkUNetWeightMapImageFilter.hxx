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
  const LabelImageType * labels = this->GetInput();
  WeightImageType *      weights = this->GetOutput();

  UNetNearestCells<LabelImageType> nearest;
  nearest.Compute(labels, m_W0 > 0.0 ? this->GetTruncationDistance() : 0.0, m_UseImageSpacing);
  this->UpdateProgress(0.8f);

  const SizeValueType voxels = labels->GetBufferedRegion().GetNumberOfPixels();
  const SizeValueType cellVoxels = nearest.GetNumberOfCellVoxels();
  const SizeValueType backgroundVoxels = voxels - cellVoxels;
  double              backgroundWeight = m_BackgroundWeight;
  double              foregroundWeight = m_ForegroundWeight;
  if (m_BalanceClasses)
  {
    // w_c = N / (K N_c), K the number of classes present: each present class weighs N / K in total.
    const double presentClasses = (backgroundVoxels > 0 ? 1.0 : 0.0) + (cellVoxels > 0 ? 1.0 : 0.0);
    backgroundWeight = backgroundVoxels > 0 ? voxels / (presentClasses * backgroundVoxels) : 1.0;
    foregroundWeight = cellVoxels > 0 ? voxels / (presentClasses * cellVoxels) : 1.0;
  }

  const LabelType *          labelBuffer = labels->GetBufferPointer();
  WeightType *               weightBuffer = weights->GetBufferPointer();
  const std::vector<float> & nearestSquared = nearest.GetNearestSquaredDistances();
  const std::vector<float> & secondSquared = nearest.GetSecondNearestSquaredDistances();
  const double               twoSigmaSquared = 2.0 * m_Sigma * m_Sigma;
  for (SizeValueType v = 0; v < voxels; ++v)
  {
    if (labelBuffer[v] != 0)
    {
      weightBuffer[v] = static_cast<WeightType>(foregroundWeight);
      continue;
    }
    double separation = 0.0;
    if (std::isfinite(secondSquared[v]))
    {
      const double sum =
        std::sqrt(static_cast<double>(nearestSquared[v])) + std::sqrt(static_cast<double>(secondSquared[v]));
      separation = m_W0 * std::exp(-sum * sum / twoSigmaSquared);
    }
    weightBuffer[v] = static_cast<WeightType>(backgroundWeight + separation);
  }
  this->UpdateProgress(1.0f);
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
  os << indent << "Tolerance: " << m_Tolerance << std::endl;
}

} // end namespace itk

#endif // itkUNetWeightMapImageFilter_hxx
