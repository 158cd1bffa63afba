#include "output.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>

namespace packlock::cli {
namespace {

std::string g_program = "packlock";

// "-w, --timeout DUR" or "    --stale-after DUR".
std::string option_label(const boost::program_options::option_description& option) {
  namespace style = boost::program_options::command_line_style;
  const std::string short_name = option.canonical_display_name(style::allow_dash_for_short);
  std::string label = short_name.size() == 2 && short_name[0] == '-' ? short_name + ", " : "    ";
  label += "--" + option.long_name();
  const std::string parameter = option.format_parameter();
  if (!parameter.empty()) label += " " + parameter;
  return label;
}

std::size_t terminal_width() noexcept {
  winsize size{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 80;
}

}  // namespace

void set_program_name(std::string name) { g_program = std::move(name); }
const std::string& program_name() { return g_program; }

void print_error(std::string_view message) {
  std::cerr << g_program << ": " << message << std::endl;
}
void print_note(std::string_view message) { print_error(message); }

void print_help(std::ostream& out, std::string_view synopsis, std::string_view summary,
                const boost::program_options::options_description& options,
                std::string_view footer) {
  out << "Usage:\n" << synopsis << "\n\n" << summary << "\n\nOptions:\n";
  std::vector<std::pair<std::string, std::string>> lines;
  std::size_t width = 0;
  for (const auto& option : options.options()) {
    lines.emplace_back(option_label(*option), option->description());
    width = std::max(width, lines.back().first.size());
  }
  for (const auto& [label, description] : lines) {
    out << "  " << label << std::string(width - label.size() + 2, ' ') << description << '\n';
  }
  if (!footer.empty()) out << '\n' << footer << '\n';
}

void print_table(std::ostream& out, const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out << line << '\n';
  }
}

bool stderr_is_terminal() noexcept { return ::isatty(STDERR_FILENO) == 1; }

void StatusLine::show(std::string_view text) {
  const std::size_t width = terminal_width();
  // One column short of the edge: some terminals wrap on the last one.
  const std::string_view shown = text.substr(0, width > 1 ? width - 1 : width);
  std::cerr << "\r\033[K" << shown << std::flush;
  shown_ = true;
}

void StatusLine::erase() {
  if (!shown_) return;
  std::cerr << "\r\033[K" << std::flush;
  shown_ = false;
}

}  // namespace packlock::cli
