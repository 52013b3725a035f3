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
#ifndef itkUNetResamplingSegmentationImageFilter_hxx
#define itkUNetResamplingSegmentationImageFilter_hxx

#include "itkUNetResamplingSegmentationImageFilter.h"

#include "itkBSplineInterpolateImageFunction.h"
#include "itkLinearInterpolateImageFunction.h"
#include "itkNearestNeighborExtrapolateImageFunction.h"
#include "itkImageRegionIterator.h"
#include "itkProgressAccumulator.h"
#include "itkResampleImageFilter.h"
#include "itkUNetTileAccumulator.h"
#include "itkVectorIndexSelectionCastImageFilter.h"

#include <algorithm>
#include <cmath>

namespace itk
{

template <typename TInputImage, typename TOutputImage>
UNetResamplingSegmentationImageFilter<TInputImage, TOutputImage>::UNetResamplingSegmentationImageFilter()
  : m_Segmenter(SegmenterType::New())
{
  this->SetNumberOfRequiredInputs(1);
  this->ProcessObject::SetOutput("Probabilities", this->MakeOutput("Probabilities"));
}

template <typename TInputImage, typename TOutputImage>
DataObject::Pointer
UNetResamplingSegmentationImageFilter<TInputImage, TOutputImage>::MakeOutput(const DataObjectIdentifierType & name)
{
  if (name == "Probabilities")
  {
    return ProbabilityImageType::New().GetPointer();
  }
  return Superclass::MakeOutput(name);
}

template <typename TInputImage, typename TOutputImage>
auto
UNetResamplingSegmentationImageFilter<TInputImage, TOutputImage>::GetProbabilityOutput() -> ProbabilityImageType *
{
  return itkDynamicCastInDebugMode<ProbabilityImageType *>(this->ProcessObject::GetOutput("Probabilities"));
}

template <typename TInputImage, typename TOutputImage>
void
UNetResamplingSegmentationImageFilter<TInputImage, TOutputImage>::GenerateOutputInformation()
{
  Superclass::GenerateOutputInformation();
  UNetModel * model = m_Segmenter->GetModel();
  model->SetImageDimension(ImageDimension);
  model->Load();
  const InputImageType * input = this->GetInput();
  m_AppliedSpacing = input->GetSpacing();
  const double millimetersPerInputUnit = UNetModel::MillimetersPerUnit(m_InputSpacingUnit, "InputSpacingUnit");
  bool         spacingGiven = false;
  for (unsigned int axis = 0; axis < ImageDimension; ++axis)
  {
    spacingGiven = spacingGiven || m_SegmentationSpacing[axis] != 0.0;
  }
  if (spacingGiven)
  {
    m_AppliedSpacing = m_SegmentationSpacing;
  }
  else
  {
    const std::vector<double> trained = model->GetTrainedSpacing();
    if (!trained.empty())
    {
      const double scale =
        UNetModel::MillimetersPerUnit(model->GetTrainedSpacingUnit(), "The model card's spacing unit") /
        millimetersPerInputUnit;
      std::transform(
        trained.begin(), trained.end(), m_AppliedSpacing.Begin(), [scale](double value) { return value * scale; });
    }
  }
  m_Resampled = false;
  for (unsigned int axis = 0; axis < ImageDimension; ++axis)
  {
    if (!(m_AppliedSpacing[axis] > 0.0) || !std::isfinite(m_AppliedSpacing[axis]))
    {
      itkExceptionMacro("SegmentationSpacing must be positive along every axis (or 0 along all); got "
                        << m_SegmentationSpacing << '.');
    }
    m_Resampled =
      m_Resampled || std::abs(m_AppliedSpacing[axis] - input->GetSpacing()[axis]) > 1e-9 * input->GetSpacing()[axis];
  }
  this->GetProbabilityOutput()->SetNumberOfComponentsPerPixel(model->GetNumberOfClasses());
}

template <typename TInputImage, typename TOutputImage>
void
UNetResamplingSegmentationImageFilter<TInputImage, TOutputImage>::GenerateInputRequestedRegion()
{
  Superclass::GenerateInputRequestedRegion();
  if (auto * input = const_cast<InputImageType *>(this->GetInput()))
  {
    input->SetRequestedRegionToLargestPossibleRegion();
  }
}

template <typename TInputImage, typename TOutputImage>
void
UNetResamplingSegmentationImageFilter<TInputImage, TOutputImage>::EnlargeOutputRequestedRegion(DataObject * output)
{
  Superclass::EnlargeOutputRequestedRegion(output);
  output->SetRequestedRegionToLargestPossibleRegion();
}

template <typename TInputImage, typename TOutputImage>
auto
UNetResamplingSegmentationImageFilter<TInputImage, TOutputImage>::MakeSegmentationGrid(
  const InputImageType * input, const SpacingType & spacing) const -> typename InputImageType::Pointer
{
  // The same physical box: from the outer edge of the input's first voxel to that of its last.
  const auto &                            region = input->GetLargestPossibleRegion();
  typename InputImageType::SizeType       size;
  ContinuousIndex<double, ImageDimension> firstCentre;
  for (unsigned int axis = 0; axis < ImageDimension; ++axis)
  {
    const double extent = static_cast<double>(region.GetSize(axis)) * input->GetSpacing()[axis];
    size[axis] = std::max<SizeValueType>(1, static_cast<SizeValueType>(std::ceil(extent / spacing[axis] - 1e-6)));
    // The new first centre, in the input's continuous index: half a new voxel in from the box's edge.
    firstCentre[axis] =
      static_cast<double>(region.GetIndex(axis)) - 0.5 + 0.5 * spacing[axis] / input->GetSpacing()[axis];
  }
  typename InputImageType::PointType origin;
  input->TransformContinuousIndexToPhysicalPoint(firstCentre, origin);
  auto grid = InputImageType::New();
  grid->SetRegions(size);
  grid->SetOrigin(origin);
  grid->SetSpacing(spacing);
  grid->SetDirection(input->GetDirection());
  return grid;
}

template <typename TInputImage, typename TOutputImage>
auto
UNetResamplingSegmentationImageFilter<TInputImage, TOutputImage>::ResampleInput(const InputImageType * input,
                                                                                const InputImageType * grid) const ->
  typename InputImageType::Pointer
{
  using PixelType = typename InputImageType::PixelType;
  if (m_Interpolation == InterpolationEnum::Linear || std::is_arithmetic<PixelType>::value)
  {
    auto resampler = ResampleImageFilter<InputImageType, InputImageType>::New();
    resampler->SetInput(input);
    resampler->SetOutputParametersFromImage(grid);
    if constexpr (std::is_arithmetic<PixelType>::value)
    {
      if (m_Interpolation == InterpolationEnum::BSpline)
      {
        resampler->SetInterpolator(BSplineInterpolateImageFunction<InputImageType, double>::New());
      }
    }
    resampler->Update();
    return resampler->GetOutput();
  }
  if constexpr (!std::is_arithmetic<PixelType>::value)
  {
    return this->ResampleChannelsCubically(input, grid);
  }
  return nullptr;
}

template <typename TInputImage, typename TOutputImage>
auto
UNetResamplingSegmentationImageFilter<TInputImage, TOutputImage>::ResampleChannelsCubically(
  const InputImageType * input, const InputImageType * grid) const -> typename InputImageType::Pointer
{
  // Multi-component images, cubically: ITK's B-spline interpolates scalar images, so each channel on its own.
  using ChannelImageType = Image<float, ImageDimension>;
  const unsigned int channels = input->GetNumberOfComponentsPerPixel();
  auto               resampled = InputImageType::New();
  resampled->CopyInformation(grid);
  resampled->SetRegions(grid->GetLargestPossibleRegion());
  resampled->SetNumberOfComponentsPerPixel(channels);
  resampled->Allocate();
  for (unsigned int c = 0; c < channels; ++c)
  {
    auto channel = VectorIndexSelectionCastImageFilter<InputImageType, ChannelImageType>::New();
    channel->SetInput(input);
    channel->SetIndex(c);
    auto resampler = ResampleImageFilter<ChannelImageType, ChannelImageType>::New();
    resampler->SetInput(channel->GetOutput());
    resampler->SetOutputParametersFromImage(grid);
    resampler->SetInterpolator(BSplineInterpolateImageFunction<ChannelImageType, double>::New());
    resampler->Update();
    const float * values = resampler->GetOutput()->GetBufferPointer();
    for (ImageRegionIterator<InputImageType> it(resampled, resampled->GetBufferedRegion()); !it.IsAtEnd(); ++it)
    {
      auto pixel = it.Get(); // a VariableLengthVector refers to the image's own buffer
      pixel[c] = *values++;
    }
  }
  return resampled;
}

template <typename TInputImage, typename TOutputImage>
void
UNetResamplingSegmentationImageFilter<TInputImage, TOutputImage>::GenerateData()
{
  // A disconnected copy of the input, so that the mini-pipeline leaves the input's own pipeline alone.
  auto input = InputImageType::New();
  input->Graft(this->GetInput());
  auto progress = ProgressAccumulator::New();
  progress->SetMiniPipelineFilter(this);
  m_Segmenter->GenerateProbabilitiesOn();
  typename ProbabilityImageType::Pointer probabilities;
  typename OutputImageType::Pointer      labels;
  if (!m_Resampled)
  {
    m_Segmenter->SetInput(input);
    progress->RegisterInternalFilter(m_Segmenter, 1.0f);
    m_Segmenter->Update();
    probabilities = m_Segmenter->GetProbabilityOutput();
    labels = m_Segmenter->GetOutput();
  }
  else
  {
    const auto grid = this->MakeSegmentationGrid(input, m_AppliedSpacing);
    progress->RegisterInternalFilter(m_Segmenter, 0.9f);
    const typename InputImageType::Pointer resampledInput = this->ResampleInput(input, grid);
    m_Segmenter->SetInput(resampledInput);
    using ProbabilityResamplerType = ResampleImageFilter<ProbabilityImageType, ProbabilityImageType>;
    auto back = ProbabilityResamplerType::New();
    back->SetInput(m_Segmenter->GetProbabilityOutput());
    back->SetOutputParametersFromImage(input);
    back->SetInterpolator(LinearInterpolateImageFunction<ProbabilityImageType, double>::New());
    back->SetExtrapolator(NearestNeighborExtrapolateImageFunction<ProbabilityImageType, double>::New());
    progress->RegisterInternalFilter(back, 0.1f);
    back->Update();
    probabilities = back->GetOutput();
    // Each voxel's label: its most probable class.
    labels = OutputImageType::New();
    labels->CopyInformation(input);
    labels->SetRegions(input->GetLargestPossibleRegion());
    labels->Allocate();
    const unsigned int  classes = probabilities->GetNumberOfComponentsPerPixel();
    const float *       values = probabilities->GetBufferPointer();
    const SizeValueType voxels = labels->GetBufferedRegion().GetNumberOfPixels();
    for (SizeValueType v = 0; v < voxels; ++v)
    {
      labels->GetBufferPointer()[v] =
        static_cast<typename OutputImageType::PixelType>(unet_detail::MostProbableClass(values + v * classes, classes));
    }
  }
  this->GraftOutput(labels);
  this->GetProbabilityOutput()->Graft(probabilities);
}

template <typename TInputImage, typename TOutputImage>
void
UNetResamplingSegmentationImageFilter<TInputImage, TOutputImage>::PrintSelf(std::ostream & os, Indent indent) const
{
  Superclass::PrintSelf(os, indent);
  os << indent << "SegmentationSpacing: " << m_SegmentationSpacing << std::endl;
  os << indent << "InputSpacingUnit: " << m_InputSpacingUnit << std::endl;
  os << indent << "Interpolation: " << m_Interpolation << std::endl;
  os << indent << "AppliedSpacing: " << m_AppliedSpacing << (m_Resampled ? " (resampled)" : " (the input's)")
     << std::endl;
  os << indent << "Segmenter:" << std::endl;
  m_Segmenter->Print(os, indent.GetNextIndent());
}

} // end namespace itk

#endif // itkUNetResamplingSegmentationImageFilter_hxx
