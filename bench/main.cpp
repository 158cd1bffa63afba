// The benchmark: every figure of SPEC section 5 this build can measure, each
// next to a baseline measured in the same run.
//
//   packlock_bench [--json FILE] [--only NAME[,NAME...]]

#include <time.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "figure.hpp"

namespace packlock::bench {

double now_ns() {
  timespec t{};
  ::clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec);
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto index = static_cast<std::size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

double median(std::vector<double> values) { return percentile(std::move(values), 0.5); }

namespace {

// Each measurement runs kRepetitions times, every repetition against its
// own baseline: single runs swing by 2x on shared machines. A figure is the
// repetition whose ratio (or value, without a baseline) is the median.
constexpr int kRepetitions = 5;

std::vector<Figure> repeated(const Measurement& measure) {
  std::map<std::string, std::vector<Figure>> runs;
  std::vector<std::string> order;
  for (int i = 0; i < kRepetitions; ++i) {
    std::vector<Figure> once;
    measure(once);
    for (Figure& f : once) {
      if (runs[f.name].empty()) order.push_back(f.name);
      runs[f.name].push_back(std::move(f));
    }
  }
  std::vector<Figure> medians;
  for (const std::string& name : order) {
    std::vector<Figure>& all = runs[name];
    const auto key = [](const Figure& f) { return f.baseline > 0 ? f.ratio() : f.value; };
    std::vector<double> keys;
    for (const Figure& f : all) keys.push_back(key(f));
    std::sort(all.begin(), all.end(), [&](const Figure& a, const Figure& b) { return key(a) < key(b); });
    Figure median_run = all[all.size() / 2];
    median_run.repetitions = keys;
    medians.push_back(std::move(median_run));
  }
  return medians;
}

std::string repetitions_text(const Figure& f) {
  std::ostringstream text;
  text << (f.baseline > 0 ? "ratios" : "values") << " of " << f.repetitions.size() << " runs:";
  for (const double r : f.repetitions) text << ' ' << std::fixed << std::setprecision(2) << r;
  return text.str();
}

void print_table(const std::vector<Figure>& figures) {
  std::cout << std::left << std::setw(28) << "name" << std::right << std::setw(14) << "value"
            << std::setw(14) << "baseline" << std::setw(9) << "ratio" << "  " << std::left
            << std::setw(30) << "bar" << "ok\n";
  for (const Figure& f : figures) {
    std::ostringstream value, baseline, ratio;
    value << std::fixed << std::setprecision(f.value < 10 ? 3 : 1) << f.value << ' ' << f.unit;
    if (f.baseline > 0) {
      baseline << std::fixed << std::setprecision(f.baseline < 10 ? 3 : 1) << f.baseline;
      ratio << std::fixed << std::setprecision(2) << f.ratio();
    } else {
      baseline << "-";
      ratio << "-";
    }
    std::cout << std::left << std::setw(28) << f.name << std::right << std::setw(14)
              << value.str() << std::setw(14) << baseline.str() << std::setw(9) << ratio.str()
              << "  " << std::left << std::setw(30) << f.bar << (f.ok ? "yes" : "NO") << '\n';
    if (!f.note.empty()) std::cout << "    " << f.note << '\n';
    if (!f.repetitions.empty()) std::cout << "    " << repetitions_text(f) << '\n';
  }
}

void write_json(const std::vector<Figure>& figures, const std::string& file) {
  nlohmann::json list = nlohmann::json::array();
  for (const Figure& f : figures) {
    list.push_back({{"name", f.name},
                    {"value", f.value},
                    {"unit", f.unit},
                    {"baseline", f.baseline > 0 ? nlohmann::json(f.baseline) : nlohmann::json()},
                    {"ratio", f.baseline > 0 ? nlohmann::json(f.ratio()) : nlohmann::json()},
                    {"bar", f.bar},
                    {"ok", f.ok},
                    {"note", f.note},
                    {"repetitions", f.repetitions}});
  }
  std::ofstream(file) << list.dump(2) << '\n';
}

}  // namespace
}  // namespace packlock::bench

int main(int argc, char** argv) {
  using namespace packlock::bench;
  std::string json_file, only;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
      json_file = argv[++i];
    } else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      only = argv[++i];
    } else {
      std::cerr << "usage: packlock_bench [--json FILE] [--only NAME[,NAME...]]\n";
      return 64;
    }
  }
  const std::map<std::string, Measurement> measurements{
      {"uncontended", uncontended},
      {"handoff", handoff},
      {"wait_cpu", wait_cpu},
      {"async_waiters", async_waiters},
      {"counter", counter},
      {"cluster", cluster},
      {"run_true", run_true},
      {"holds", holds},
      {"waiting_threads", waiting_threads},
      {"drain", drain},
  };
  std::vector<Figure> figures;
  for (const auto& [name, measure] : measurements) {
    if (!only.empty() && ("," + only + ",").find("," + name + ",") == std::string::npos) continue;
    std::cerr << "measuring " << name << "...\n";
    for (Figure& f : repeated(measure)) figures.push_back(std::move(f));
  }
  print_table(figures);
  if (!json_file.empty()) write_json(figures, json_file);
  const bool all_ok = std::all_of(figures.begin(), figures.end(), [](const Figure& f) { return f.ok; });
  return all_ok ? 0 : 1;
}
