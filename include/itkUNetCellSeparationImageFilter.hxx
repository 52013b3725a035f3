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
#ifndef itkUNetCellSeparationImageFilter_hxx
#define itkUNetCellSeparationImageFilter_hxx

#include "itkUNetCellSeparationImageFilter.h"

#include "itkUNetCellLabelImageFilter.h"

#include "itkBinaryThresholdImageFilter.h"
#include "itkInvertIntensityImageFilter.h"
#include "itkMaskImageFilter.h"
#include "itkMorphologicalWatershedFromMarkersImageFilter.h"
#include "itkProgressAccumulator.h"
#include "itkVectorIndexSelectionCastImageFilter.h"

namespace itk
{

template <typename TProbabilityImage, typename TLabelImage>
void
UNetCellSeparationImageFilter<TProbabilityImage, TLabelImage>::VerifyPreconditions() ITKv5_CONST
{
  Superclass::VerifyPreconditions();
  if (!(m_SeedThreshold > 0.0 && m_SeedThreshold <= 1.0))
  {
    itkExceptionMacro("SeedThreshold must be a probability in (0, 1]; got " << m_SeedThreshold << '.');
  }
  if (!(m_CellThreshold > 0.0 && m_CellThreshold <= m_SeedThreshold))
  {
    itkExceptionMacro("CellThreshold must be in (0, SeedThreshold = " << m_SeedThreshold << "] (seeds are cells); got "
                                                                      << m_CellThreshold << '.');
  }
}

template <typename TProbabilityImage, typename TLabelImage>
void
UNetCellSeparationImageFilter<TProbabilityImage, TLabelImage>::VerifyInputInformation() ITKv5_CONST
{
  Superclass::VerifyInputInformation();
  const unsigned int components = this->GetInput()->GetNumberOfComponentsPerPixel();
  if (m_CellClass >= components)
  {
    itkExceptionMacro("CellClass " << m_CellClass << " is not a class of the input, which has " << components
                                   << " probabilities per voxel.");
  }
}

template <typename TProbabilityImage, typename TLabelImage>
void
UNetCellSeparationImageFilter<TProbabilityImage, TLabelImage>::GenerateData()
{
  using CellProbabilityImageType = Image<float, ImageDimension>;
  using BinaryImageType = Image<unsigned char, ImageDimension>;

  auto cellProbability = VectorIndexSelectionCastImageFilter<ProbabilityImageType, CellProbabilityImageType>::New();
  cellProbability->SetInput(this->GetInput());
  cellProbability->SetIndex(m_CellClass);

  // The seeds: this module's own cell labelling (threshold, connected components) of p(cell) >= SeedThreshold.
  auto seeds = UNetCellLabelImageFilter<CellProbabilityImageType, LabelImageType>::New();
  seeds->SetInput(cellProbability->GetOutput());
  seeds->SetForegroundThreshold(static_cast<float>(m_SeedThreshold));
  seeds->SetFullyConnected(m_FullyConnected);

  // The watershed floods from low to high: cells grow first where the network is surest of them.
  auto relief = InvertIntensityImageFilter<CellProbabilityImageType>::New();
  relief->SetInput(cellProbability->GetOutput());
  relief->SetMaximum(1.0f);
  auto grown = MorphologicalWatershedFromMarkersImageFilter<CellProbabilityImageType, LabelImageType>::New();
  grown->SetInput(relief->GetOutput());
  grown->SetMarkerImage(seeds->GetOutput());
  grown->SetMarkWatershedLine(true);
  grown->SetFullyConnected(m_FullyConnected);

  // The flood covers the whole image, and the voxels the network finds unlikely to be cell go back to 0 afterwards:
  // one ITK watershed, no mask. A flood confined to the likely voxels differs only where it would cross unlikely ones
  // to reach others, a fraction of a percent of the voxels with no measurable effect on the scores
  // (docs/model-card.md).
  auto cellVoxels = BinaryThresholdImageFilter<CellProbabilityImageType, BinaryImageType>::New();
  cellVoxels->SetInput(cellProbability->GetOutput());
  cellVoxels->SetLowerThreshold(static_cast<float>(m_CellThreshold));
  cellVoxels->SetInsideValue(1);
  cellVoxels->SetOutsideValue(0);
  auto cells = MaskImageFilter<LabelImageType, BinaryImageType, LabelImageType>::New();
  cells->SetInput(grown->GetOutput());
  cells->SetMaskImage(cellVoxels->GetOutput());
  cells->SetOutsideValue(0);

  auto progress = ProgressAccumulator::New();
  progress->SetMiniPipelineFilter(this);
  const std::pair<ProcessObject *, float> stages[] = { { cellProbability, 0.05f }, { seeds, 0.25f },
                                                       { relief, 0.05f },          { grown, 0.55f },
                                                       { cellVoxels, 0.05f },      { cells, 0.05f } };
  for (const auto & stage : stages)
  {
    // The mini-pipeline runs on this filter's work units and reports its progress as this filter's.
    stage.first->SetNumberOfWorkUnits(this->GetNumberOfWorkUnits());
    progress->RegisterInternalFilter(stage.first, stage.second);
  }

  cells->GraftOutput(this->GetOutput());
  cells->Update();
  this->GraftOutput(cells->GetOutput());
  m_NumberOfCells = seeds->GetNumberOfCells();
  // ITK 5.2's MaskImageFilter, the last stage, does not report its completion; this filter does, for its observers.
  this->UpdateProgress(1.0f);
}

template <typename TProbabilityImage, typename TLabelImage>
void
UNetCellSeparationImageFilter<TProbabilityImage, TLabelImage>::SetCellClass(unsigned int cellClass)
{
  this->SetFrom(SettingSource::Caller, m_CellClass, m_CellClassSource, cellClass);
}

template <typename TProbabilityImage, typename TLabelImage>
void
UNetCellSeparationImageFilter<TProbabilityImage, TLabelImage>::SetSeedThreshold(double threshold)
{
  this->SetFrom(SettingSource::Caller, m_SeedThreshold, m_SeedThresholdSource, threshold);
}

template <typename TProbabilityImage, typename TLabelImage>
void
UNetCellSeparationImageFilter<TProbabilityImage, TLabelImage>::SetCellThreshold(double threshold)
{
  this->SetFrom(SettingSource::Caller, m_CellThreshold, m_CellThresholdSource, threshold);
}

template <typename TProbabilityImage, typename TLabelImage>
template <typename TValue>
void
UNetCellSeparationImageFilter<TProbabilityImage, TLabelImage>::SetFrom(SettingSource source, TValue & setting,
                                                                       SettingSource & settingsSource,
                                                                       const TValue &  value)
{
  if (source == SettingSource::ModelCard && settingsSource == SettingSource::Caller)
  {
    return;
  }
  settingsSource = source;
  if (setting != value)
  {
    setting = value;
    this->Modified();
  }
}

template <typename TProbabilityImage, typename TLabelImage>
const char *
UNetCellSeparationImageFilter<TProbabilityImage, TLabelImage>::ToString(SettingSource source)
{
  switch (source)
  {
    case SettingSource::ModelCard:
      return "model card";
    case SettingSource::Caller:
      return "set";
    case SettingSource::Default:
      break;
  }
  return "default";
}

template <typename TProbabilityImage, typename TLabelImage>
void
UNetCellSeparationImageFilter<TProbabilityImage, TLabelImage>::PrintSelf(std::ostream & os, Indent indent) const
{
  Superclass::PrintSelf(os, indent);
  os << indent << "CellClass: " << m_CellClass << " (" << ToString(m_CellClassSource) << ')' << std::endl;
  os << indent << "SeedThreshold: " << m_SeedThreshold << " (" << ToString(m_SeedThresholdSource) << ')' << std::endl;
  os << indent << "CellThreshold: " << m_CellThreshold << " (" << ToString(m_CellThresholdSource) << ')' << std::endl;
  os << indent << "FullyConnected: " << (m_FullyConnected ? "On" : "Off") << std::endl;
  os << indent << "NumberOfCells: " << m_NumberOfCells << std::endl;
}

#ifndef ITK_WRAPPING_PARSER // the model card's C++17 types stay out of castxml's C++11 parse
template <typename TProbabilityImage, typename TLabelImage>
void
UNetCellSeparationImageFilter<TProbabilityImage, TLabelImage>::SetParametersFromModel(const UNetModel * model)
{
  if (model == nullptr || !model->HasModelCard())
  {
    return;
  }
  const UNetModelCard & card = model->GetModelCard();
  if (card.CellClass)
  {
    this->SetFrom(SettingSource::ModelCard, m_CellClass, m_CellClassSource, *card.CellClass);
  }
  if (card.SeedThreshold)
  {
    this->SetFrom(SettingSource::ModelCard, m_SeedThreshold, m_SeedThresholdSource, *card.SeedThreshold);
  }
  if (card.CellThreshold)
  {
    this->SetFrom(SettingSource::ModelCard, m_CellThreshold, m_CellThresholdSource, *card.CellThreshold);
  }
}
#endif

} // end namespace itk

#endif // itkUNetCellSeparationImageFilter_hxx
