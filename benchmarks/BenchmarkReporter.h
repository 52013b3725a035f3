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

#include <map>
#include <string>

/** Prints as usual and keeps each benchmark's real time per iteration (seconds), to compare them after the run. */
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
        seconds[run.benchmark_name()] = run.real_accumulated_time / static_cast<double>(run.iterations);
      }
    }
  }

  std::map<std::string, double> seconds;
};

#endif
