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
#ifndef UNetBenchmarkReporter_h
#define UNetBenchmarkReporter_h

#include <benchmark/benchmark.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

/** The median of `values`; 0 for none. */
inline double
Median(std::vector<double> values)
{
  if (values.empty())
  {
    return 0.0;
  }
  std::sort(values.begin(), values.end());
  const size_t middle = values.size() / 2;
  return values.size() % 2 == 1 ? values[middle] : 0.5 * (values[middle - 1] + values[middle]);
}

/** Prints as usual and keeps every repetition's real time per iteration (seconds) under the benchmark's function
 * name, so that the benchmarks can be compared by their medians after the run. */
class RecordingReporter : public benchmark::ConsoleReporter
{
public:
  void
  ReportRuns(const std::vector<Run> & runs) override
  {
    ConsoleReporter::ReportRuns(runs);
    for (const Run & run : runs)
    {
      if (run.run_type == Run::RT_Iteration && run.iterations > 0)
      {
        m_Seconds[run.run_name.function_name].push_back(run.real_accumulated_time /
                                                        static_cast<double>(run.iterations));
      }
    }
  }

  /** The median over the repetitions of `name`; 0 if it did not run. */
  double
  MedianSeconds(const std::string & name) const
  {
    const auto found = m_Seconds.find(name);
    return found == m_Seconds.end() ? 0.0 : Median(found->second);
  }

private:
  std::map<std::string, std::vector<double>> m_Seconds;
};

/** Google Benchmark's arguments with random interleaving of the repetitions switched on unless the user chose:
 * alternating the benchmarks that are compared spreads the machine's slow phases over both. */
inline std::vector<char *>
ArgumentsWithInterleaving(int argc, char * argv[])
{
  static char         interleave[] = "--benchmark_enable_random_interleaving=true";
  std::vector<char *> arguments(argv, argv + argc);
  const bool          chosen = std::any_of(arguments.begin(), arguments.end(), [](const char * argument) {
    return std::string(argument).rfind("--benchmark_enable_random_interleaving", 0) == 0;
  });
  if (!chosen)
  {
    arguments.push_back(interleave);
  }
  arguments.push_back(nullptr);
  return arguments;
}

#endif
