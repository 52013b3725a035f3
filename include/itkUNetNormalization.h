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

#include <algorithm>
#include <array>
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
  /** No normalisation: mean 0 and standard deviation 1 for every channel. */
  UNetNormalization() = default;
  /** Means and standard deviations: none, one for every channel, or one per channel each (checked by Verify()). */
  UNetNormalization(std::vector<double> mean, std::vector<double> standardDeviation)
    : m_Mean(std::move(mean))
    , m_StandardDeviation(std::move(standardDeviation))
  {}

  /** The means and the standard deviations as given (empty: the default, 0 and 1). */
  /** @{ */
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
  /** @} */

  /** The mean and standard deviation of channel `channel`. */
  /** @{ */
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
  /** @} */

  /** Values below `low` or above `high` are clipped to them before the rest (nnU-Net's scheme for CT); no clipping
   * by default. */
  void
  SetClipWindow(double low, double high)
  {
    m_ClipWindow = { { low, high } };
    m_HasClipWindow = true;
  }
  /** Whether values are clipped (SetClipWindow()). */
  bool
  HasClipWindow() const
  {
    return m_HasClipWindow;
  }
  /** The window [low, high]; meaningful when HasClipWindow(). */
  const std::array<double, 2> &
  GetClipWindow() const
  {
    return m_ClipWindow;
  }

  /** `value` clipped to the window, if there is one. */
  double
  Clip(double value) const
  {
    return m_HasClipWindow ? std::min(std::max(value, m_ClipWindow[0]), m_ClipWindow[1]) : value;
  }

  /** The scale and shift of channel `channel`: value * GetScale(c) + GetShift(c) == (value - mean) / standard
   * deviation, after clipping. */
  /** @{ */
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
  /** @} */

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
    if (m_HasClipWindow &&
        !(m_ClipWindow[0] < m_ClipWindow[1] && std::isfinite(m_ClipWindow[0]) && std::isfinite(m_ClipWindow[1])))
    {
      itkGenericExceptionMacro("The normalisation's clip window must be two finite values, the first below the "
                               "second; got ["
                               << m_ClipWindow[0] << ", " << m_ClipWindow[1] << "].");
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
    UNetNormalization standardized(mean, standardDeviation);
    standardized.m_ClipWindow = m_ClipWindow;
    standardized.m_HasClipWindow = m_HasClipWindow;
    return standardized;
  }

  /** Compare two normalisations by their values as given: one value for every channel differs from the same value
   * once per channel. */
  /** @{ */
  bool
  operator==(const UNetNormalization & other) const
  {
    return m_Mean == other.m_Mean && m_StandardDeviation == other.m_StandardDeviation &&
           m_HasClipWindow == other.m_HasClipWindow && (!m_HasClipWindow || m_ClipWindow == other.m_ClipWindow);
  }
  bool
  operator!=(const UNetNormalization & other) const
  {
    return !(*this == other);
  }
  /** @} */

private:
  static double
  ValueFor(const std::vector<double> & values, unsigned int channel, double none)
  {
    return values.empty() ? none : values[values.size() == 1 ? 0 : channel];
  }

  std::vector<double>   m_Mean{};
  std::vector<double>   m_StandardDeviation{};
  std::array<double, 2> m_ClipWindow{ { 0.0, 0.0 } };
  bool                  m_HasClipWindow{ false };
};

} // end namespace itk

#endif // itkUNetNormalization_h
