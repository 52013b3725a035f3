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

// The normalisation value type alone: per-channel values, the rules that are checked and their messages, and the
// standardisation folded into one affine map.

#include "itkUNetNormalization.h"

#include "gtest/gtest.h"

#include <limits>

namespace
{
void
ExpectVerifyFails(const itk::UNetNormalization & normalization, unsigned int channels, const std::string & part)
{
  try
  {
    normalization.Verify(channels);
    ADD_FAILURE() << "no exception; expected \"" << part << '"';
  }
  catch (const itk::ExceptionObject & error)
  {
    EXPECT_NE(std::string(error.GetDescription()).find(part), std::string::npos) << error.GetDescription();
  }
}
} // namespace

TEST(UNetNormalization, NoneOneOrOneValuePerChannel)
{
  const itk::UNetNormalization none;
  EXPECT_EQ(none.GetMean(2), 0.0);
  EXPECT_EQ(none.GetStandardDeviation(2), 1.0);
  const itk::UNetNormalization one({ 10.0 }, { 4.0 });
  EXPECT_EQ(one.GetMean(0), 10.0);
  EXPECT_EQ(one.GetMean(2), 10.0);
  EXPECT_DOUBLE_EQ(one.GetScale(1) * 18.0 + one.GetShift(1), (18.0 - 10.0) / 4.0);
  const itk::UNetNormalization each({ 1.0, 2.0, 3.0 }, {});
  EXPECT_EQ(each.GetMean(1), 2.0);
  EXPECT_EQ(each.GetStandardDeviation(1), 1.0);
  EXPECT_NO_THROW(each.Verify(3));
  EXPECT_NO_THROW(one.Verify(5));
}

TEST(UNetNormalization, BadValuesAreRefusedSayingWhich)
{
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  ExpectVerifyFails(itk::UNetNormalization({ 1.0, 2.0 }, {}), 3, "The normalisation has 2 values for 3 channels");
  ExpectVerifyFails(
    itk::UNetNormalization({}, { 0.0 }), 1, "Every NormalizationStandardDeviation must be positive and finite; got 0");
  ExpectVerifyFails(itk::UNetNormalization({}, { inf }), 1, "positive and finite; got inf");
  ExpectVerifyFails(itk::UNetNormalization({ nan }, {}), 1, "Every NormalizationMean must be finite; got nan");
  ExpectVerifyFails(itk::UNetNormalization({ -inf }, {}), 1, "got -inf");
}

TEST(UNetNormalization, AfterStandardizingIsOneAffineMap)
{
  // Map a channel of mean 50 and standard deviation 20 to mean 124 and standard deviation 42, then normalise with
  // mean 120 and standard deviation 40: the composed map, checked at a few values.
  const itk::UNetNormalization trained({ 120.0 }, { 40.0 });
  const itk::UNetNormalization folded = trained.AfterStandardizing({ 50.0 }, { 20.0 }, 124.0, 42.0);
  for (const double x : { -3.0, 0.0, 50.0, 77.5 })
  {
    const double standardized = (x - 50.0) / 20.0 * 42.0 + 124.0;
    EXPECT_NEAR(folded.GetScale(0) * x + folded.GetShift(0), (standardized - 120.0) / 40.0, 1e-12) << x;
  }
  EXPECT_NE(folded, trained);
  EXPECT_EQ(folded, trained.AfterStandardizing({ 50.0 }, { 20.0 }, 124.0, 42.0));
}
