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
#ifndef itkUNetNormalization_h
#define itkUNetNormalization_h

#include "itkMacro.h"

#include <cmath>
#include <vector>

namespace itk
{

/** \class UNetNormalization
 * \brief The per-channel intensity normalisation a network expects: (value - mean) / standard deviation.
 *
 * Means and standard deviations are given as ITK filters take per-channel values: none (mean 0, standard deviation
 * 1), one for every channel, or one per channel. This value type is the one place that rule, and the rule that a
 * standard deviation is positive and finite and a mean finite, live: the segmentation filter and the command-line
 * module both use it.
 *
 * \sa UNetSegmentationImageFilter
 * \ingroup UNetSegmentation
 */
class UNetNormalization
{
public:
  UNetNormalization() = default;
  UNetNormalization(std::vector<double> mean, std::vector<double> standardDeviation)
    : m_Mean(std::move(mean))
    , m_StandardDeviation(std::move(standardDeviation))
  {}

  const std::vector<double> &
  GetMean() const
  {
    return m_Mean;
  }
  const std::vector<double> &
  GetStandardDeviation() const
  {
    return m_StandardDeviation;
  }

  /** The mean and standard deviation of channel `channel`. */
  double
  GetMean(unsigned int channel) const
  {
    return ValueFor(m_Mean, channel, 0.0);
  }
  double
  GetStandardDeviation(unsigned int channel) const
  {
    return ValueFor(m_StandardDeviation, channel, 1.0);
  }

  /** value * GetScale(c) + GetShift(c) == (value - mean) / standard deviation. */
  double
  GetScale(unsigned int channel) const
  {
    return 1.0 / this->GetStandardDeviation(channel);
  }
  double
  GetShift(unsigned int channel) const
  {
    return -this->GetMean(channel) / this->GetStandardDeviation(channel);
  }

  /** Throws unless the values are finite, the standard deviations positive and, for an image of `channels` channels,
   * each list has no value, one, or one per channel. */
  void
  Verify(unsigned int channels) const
  {
    this->VerifyValues();
    for (const std::vector<double> * values : { &m_Mean, &m_StandardDeviation })
    {
      if (values->size() > 1 && values->size() != channels)
      {
        itkGenericExceptionMacro("The normalisation has " << values->size() << " values for " << channels
                                                          << " channels; give one value or one per channel.");
      }
    }
  }

  /** Throws unless the means are finite and the standard deviations positive and finite (whatever the channels). */
  void
  VerifyValues() const
  {
    for (const double mean : m_Mean)
    {
      if (!std::isfinite(mean))
      {
        itkGenericExceptionMacro("Every NormalizationMean must be finite; got " << mean << '.');
      }
    }
    for (const double standardDeviation : m_StandardDeviation)
    {
      if (!(standardDeviation > 0.0) || !std::isfinite(standardDeviation))
      {
        itkGenericExceptionMacro("Every NormalizationStandardDeviation must be positive and finite; got "
                                 << standardDeviation << '.');
      }
    }
  }

  /** This normalisation applied after mapping each channel c linearly from the image's mean `imageMean[c]` and
   * standard deviation `imageStandardDeviation[c]` to `toMean` and `toStandardDeviation`, as one normalisation: the
   * per-image standardisation a network trained on standardised images needs. */
  UNetNormalization
  AfterStandardizing(const std::vector<double> & imageMean, const std::vector<double> & imageStandardDeviation,
                     double toMean, double toStandardDeviation) const
  {
    std::vector<double> mean(imageMean.size());
    std::vector<double> standardDeviation(imageMean.size());
    for (unsigned int c = 0; c < imageMean.size(); ++c)
    {
      // (x - m) / s * S + M, then (. - mean) / sd: one affine map, written as (x - mean') / sd'.
      const double ratio = imageStandardDeviation[c] / toStandardDeviation;
      mean[c] = imageMean[c] + (this->GetMean(c) - toMean) * ratio;
      standardDeviation[c] = this->GetStandardDeviation(c) * ratio;
    }
    return UNetNormalization(mean, standardDeviation);
  }

  bool
  operator==(const UNetNormalization & other) const
  {
    return m_Mean == other.m_Mean && m_StandardDeviation == other.m_StandardDeviation;
  }
  bool
  operator!=(const UNetNormalization & other) const
  {
    return !(*this == other);
  }

private:
  static double
  ValueFor(const std::vector<double> & values, unsigned int channel, double none)
  {
    return values.empty() ? none : values[values.size() == 1 ? 0 : channel];
  }

  std::vector<double> m_Mean{};
  std::vector<double> m_StandardDeviation{};
};

} // end namespace itk

#endif // itkUNetNormalization_h
