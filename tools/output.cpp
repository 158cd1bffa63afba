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

namespace {

// The length of the well-formed UTF-8 sequence at the start of `text`, or 0.
std::size_t utf8_length(std::string_view text) noexcept {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(0);
  std::size_t length = 0;
  char32_t code = 0;
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
    code = lead & 0x1f;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    code = lead & 0x0f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    code = lead & 0x07;
  } else {
    return 0;
  }
  if (text.size() < length) return 0;
  for (std::size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xc0) != 0x80) return 0;
    code = (code << 6) | (byte(i) & 0x3f);
  }
  // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
  const bool overlong = (length == 3 && code < 0x800) || (length == 4 && code < 0x10000);
  if (overlong || (code >= 0xd800 && code <= 0xdfff) || code > 0x10ffff) return 0;
  return length;
}

void append_hex_byte(std::string& out, unsigned char byte) {
  static constexpr char kDigits[] = "0123456789abcdef";
  out += "\\x";
  out += kDigits[byte >> 4];
  out += kDigits[byte & 0xf];
}

// Walks `text`: valid characters go to `character`, invalid bytes are
// written as \xHH.
template <typename OnCharacter>
std::string escaped(std::string_view text, OnCharacter character) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    const std::size_t length = utf8_length(text);
    if (length == 0) {
      append_hex_byte(out, static_cast<unsigned char>(text.front()));
      text.remove_prefix(1);
      continue;
    }
    character(out, text.substr(0, length));
    text.remove_prefix(length);
  }
  return out;
}

}  // namespace

std::string printable(std::string_view text) {
  return escaped(text, [](std::string& out, std::string_view character) {
    const auto first = static_cast<unsigned char>(character.front());
    const bool c1 = character.size() == 2 && first == 0xc2 &&
                    static_cast<unsigned char>(character[1]) < 0xa0;
    if (character == "\\") {
      out += "\\\\";
    } else if (character.size() == 1 && (first < 0x20 || first == 0x7f)) {
      switch (first) {
        case '\a': out += "\\a"; break;
        case '\b': out += "\\b"; break;
        case '\t': out += "\\t"; break;
        case '\n': out += "\\n"; break;
        case '\v': out += "\\v"; break;
        case '\f': out += "\\f"; break;
        case '\r': out += "\\r"; break;
        case 0x1b: out += "\\e"; break;
        default: append_hex_byte(out, first);
      }
    } else if (c1) {
      for (const char byte : character) append_hex_byte(out, static_cast<unsigned char>(byte));
    } else {
      out += character;
    }
  });
}

std::string json_text(std::string_view text) {
  return escaped(text, [](std::string& out, std::string_view character) {
    out += character == "\\" ? "\\\\" : std::string(character);
  });
}

void print_error(std::string_view message) {
  std::cerr << g_program << ": " << printable(message) << std::endl;
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

void print_table(std::ostream& out, const std::vector<std::vector<std::string>>& given) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& row : given) {
    rows.emplace_back();
    for (const std::string& cell : row) rows.back().push_back(printable(cell));
  }
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
  const std::string clean = printable(text);
  const std::string_view shown =
      std::string_view(clean).substr(0, width > 1 ? width - 1 : width);
  std::cerr << "\r\033[K" << shown << std::flush;
  shown_ = true;
}

void StatusLine::erase() {
  if (!shown_) return;
  std::cerr << "\r\033[K" << std::flush;
  shown_ = false;
}

}  // namespace packlock::cli
