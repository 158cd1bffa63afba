#pragma once
// One figure of scripts/bench.sh: a value measured next to its baseline in
// the same run, with the bar it must meet.

#include <sys/types.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

namespace packlock::bench {

struct Figure {
  Figure(std::string name_, double value_, std::string unit_, double baseline_, std::string bar_)
      : name(std::move(name_)), value(value_), unit(std::move(unit_)), baseline(baseline_),
        bar(std::move(bar_)) {}

  std::string name;
  double value = 0;
  std::string unit;
  double baseline = 0;   // same unit; 0 when the figure has no baseline
  std::string bar;       // the bar, in words
  bool ok = false;
  std::string note;      // what the baseline is, extra figures
  // The ratio (or, without a baseline, the value) of each repetition; the
  // figure itself is the repetition with the median of them.
  std::vector<double> repetitions;

  double ratio() const { return baseline > 0 ? value / baseline : 0; }
};

// Each measurement appends its figures.
using Measurement = std::function<void(std::vector<Figure>&)>;

void uncontended(std::vector<Figure>& figures);
void handoff(std::vector<Figure>& figures);
void wait_cpu(std::vector<Figure>& figures);
void async_waiters(std::vector<Figure>& figures);
void counter(std::vector<Figure>& figures);
void run_true(std::vector<Figure>& figures);
void holds(std::vector<Figure>& figures);
void waiting_threads(std::vector<Figure>& figures);
void drain(std::vector<Figure>& figures);
void cluster(std::vector<Figure>& figures);

// Helpers shared by the measurements.
double now_ns();
double median(std::vector<double> values);
double percentile(std::vector<double> values, double p);
// The threads of this process.
int thread_count();
// Lock requests on `inode` the kernel has blocked, of process `pid` (0: any).
int blocked_requests(ino_t inode, pid_t pid);
// Waits until there are `count` of them (false after 120 s).
bool await_blocked_requests(ino_t inode, pid_t pid, int count);

}  // namespace packlock::bench
