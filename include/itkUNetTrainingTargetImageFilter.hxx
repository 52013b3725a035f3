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
#ifndef itkUNetTrainingTargetImageFilter_hxx
#define itkUNetTrainingTargetImageFilter_hxx

#include "itkUNetTrainingTargetImageFilter.h"

#include "itkMath.h"
#include "itkProgressTransformer.h"

namespace itk
{

template <typename TLabelImage, typename TOutputImage>
void
UNetTrainingTargetImageFilter<TLabelImage, TOutputImage>::VerifyPreconditions() ITKv5_CONST
{
  Superclass::VerifyPreconditions();
  if (!(m_Gap >= 0.0) || !std::isfinite(m_Gap))
  {
    itkExceptionMacro("Gap must be non-negative and finite; got " << m_Gap << '.');
  }
}

template <typename TLabelImage, typename TOutputImage>
void
UNetTrainingTargetImageFilter<TLabelImage, TOutputImage>::GenerateData()
{
  this->AllocateOutputs();
  this->GetMultiThreader()->SetNumberOfWorkUnits(this->GetNumberOfWorkUnits());
  const LabelImageType * labels = this->GetInput();
  OutputImageType *      target = this->GetOutput();

  // For a cell voxel the nearest cell is its own (distance 0), so the second nearest is the nearest other cell.
  unet_detail::NearestCells<LabelImageType> nearest;
  nearest.SetMaximumDistance(m_Gap);
  nearest.SetUseImageSpacing(m_UseImageSpacing);
  nearest.SetIgnoreLabel(m_IgnoreLabel);
  {
    ProgressTransformer progress(0.0f, 0.9f, this);
    nearest.Compute(labels, this, progress.GetProcessObject());
  }

  const LabelType *          labelBuffer = labels->GetBufferPointer();
  OutputPixelType *          targetBuffer = target->GetBufferPointer();
  const std::vector<float> & otherSquared = nearest.GetSecondNearestSquaredDistances();
  const double               gapSquared = m_Gap * m_Gap;
  const auto                 labelPiece = [&](const RegionType & piece) {
    for (const IndexType & lineStart : unet_detail::LineStarts(piece))
    {
      const auto first = static_cast<SizeValueType>(labels->ComputeOffset(lineStart));
      for (SizeValueType v = first; v < first + piece.GetSize(0); ++v)
      {
        if (labelBuffer[v] == 0)
        {
          targetBuffer[v] = m_BackgroundValue;
        }
        else if (labelBuffer[v] == m_IgnoreLabel)
        {
          targetBuffer[v] = m_IgnoreValue;
        }
        else
        {
          targetBuffer[v] = static_cast<double>(otherSquared[v]) <= gapSquared ? m_BorderValue : m_ForegroundValue;
        }
      }
    }
  };
  ProgressTransformer progress(0.9f, 1.0f, this);
  this->GetMultiThreader()->template ParallelizeImageRegion<ImageDimension>(
    target->GetBufferedRegion(), labelPiece, progress.GetProcessObject());
}

template <typename TLabelImage, typename TOutputImage>
void
UNetTrainingTargetImageFilter<TLabelImage, TOutputImage>::PrintSelf(std::ostream & os, Indent indent) const
{
  Superclass::PrintSelf(os, indent);
  os << indent << "Gap: " << m_Gap << std::endl;
  os << indent << "UseImageSpacing: " << (m_UseImageSpacing ? "On" : "Off") << std::endl;
  os << indent
     << "BackgroundValue: " << static_cast<typename NumericTraits<OutputPixelType>::PrintType>(m_BackgroundValue)
     << std::endl;
  os << indent
     << "ForegroundValue: " << static_cast<typename NumericTraits<OutputPixelType>::PrintType>(m_ForegroundValue)
     << std::endl;
  os << indent << "BorderValue: " << static_cast<typename NumericTraits<OutputPixelType>::PrintType>(m_BorderValue)
     << std::endl;
  os << indent << "IgnoreLabel: " << static_cast<typename NumericTraits<LabelType>::PrintType>(m_IgnoreLabel)
     << std::endl;
  os << indent << "IgnoreValue: " << static_cast<typename NumericTraits<OutputPixelType>::PrintType>(m_IgnoreValue)
     << std::endl;
}

} // end namespace itk

#endif // itkUNetTrainingTargetImageFilter_hxx
