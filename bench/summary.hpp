// The console reporter of the benchmarks, keeping the median of each benchmark's repetitions in
// microseconds for the summary they print beside their targets.
#pragma once

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

namespace stateroom::bench {

class MedianReporter : public benchmark::ConsoleReporter {
 public:
  MedianReporter() : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_Defaults : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs)
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name == "median")
        median_us_[run.run_name.function_name] =
            run.GetAdjustedRealTime() * benchmark::GetTimeUnitMultiplier(benchmark::kMicrosecond) /
            benchmark::GetTimeUnitMultiplier(run.time_unit);
    ConsoleReporter::ReportRuns(runs);
  }

  /// The median of `name` ("snapshot/counter_wasm") in microseconds; -1 when it did not run.
  double median_us(const std::string& name) const {
    auto it = median_us_.find(name);
    return it == median_us_.end() ? -1.0 : it->second;
  }

 private:
  std::map<std::string, double> median_us_;
};

}  // namespace stateroom::bench
