#pragma once
// Durations on the command line: `5`, `0.5`, `500ms`, `2s`, `1m`, `1h`.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace packlock::cli {

// A bare number is seconds; the units are ms, s, m and h, with or without a
// fraction ("1.5m"). Anything else, a negative value or one beyond what
// std::chrono::nanoseconds holds, gives std::nullopt.
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) noexcept;

// Short human form: "750ms", "2.5s", "3m 20s", "2h 5m".
std::string format_duration(std::chrono::nanoseconds duration);

}  // namespace packlock::cli
