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
#ifndef itkUNetCellLabelImageFilter_hxx
#define itkUNetCellLabelImageFilter_hxx

#include "itkUNetCellLabelImageFilter.h"

#include "itkBinaryThresholdImageFilter.h"
#include "itkConnectedComponentImageFilter.h"
#include "itkProgressAccumulator.h"

namespace itk
{

template <typename TMaskImage, typename TLabelImage>
void
UNetCellLabelImageFilter<TMaskImage, TLabelImage>::GenerateData()
{
  using BinaryImageType = Image<unsigned char, MaskImageType::ImageDimension>;
  auto threshold = BinaryThresholdImageFilter<MaskImageType, BinaryImageType>::New();
  threshold->SetInput(this->GetInput());
  threshold->SetLowerThreshold(m_ForegroundThreshold);
  threshold->SetInsideValue(1);
  threshold->SetOutsideValue(0);

  auto components = ConnectedComponentImageFilter<BinaryImageType, LabelImageType>::New();
  components->SetInput(threshold->GetOutput());
  components->SetFullyConnected(m_FullyConnected);
  components->SetBackgroundValue(0);

  // The mini-pipeline runs on this filter's work units and reports its progress as this filter's.
  threshold->SetNumberOfWorkUnits(this->GetNumberOfWorkUnits());
  components->SetNumberOfWorkUnits(this->GetNumberOfWorkUnits());
  auto progress = ProgressAccumulator::New();
  progress->SetMiniPipelineFilter(this);
  progress->RegisterInternalFilter(threshold, 0.2f);
  progress->RegisterInternalFilter(components, 0.8f);

  components->GraftOutput(this->GetOutput());
  components->Update();
  this->GraftOutput(components->GetOutput());
  m_NumberOfCells = components->GetObjectCount();
}

template <typename TMaskImage, typename TLabelImage>
void
UNetCellLabelImageFilter<TMaskImage, TLabelImage>::PrintSelf(std::ostream & os, Indent indent) const
{
  Superclass::PrintSelf(os, indent);
  os << indent
     << "ForegroundThreshold: " << static_cast<typename NumericTraits<MaskPixelType>::PrintType>(m_ForegroundThreshold)
     << std::endl;
  os << indent << "FullyConnected: " << (m_FullyConnected ? "On" : "Off") << std::endl;
  os << indent << "NumberOfCells: " << m_NumberOfCells << std::endl;
}

} // end namespace itk

#endif // itkUNetCellLabelImageFilter_hxx
