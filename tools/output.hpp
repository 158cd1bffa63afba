#pragma once
// How packlock writes: results to stdout; errors, progress and verbose lines
// to stderr, so that a command's stdout stays its own. Every error is one
// line: "packlock: <pack or path>: <cause>".

#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include <boost/program_options/cmdline.hpp>
#include <boost/program_options/options_description.hpp>

namespace packlock::cli {

// The name errors start with: "packlock", or "packlock-run" when started
// through that link. Set once by main().
void set_program_name(std::string name);
const std::string& program_name();

// Text for a person, as `ls -b` shows names: a backslash as \\, control
// characters (C0, DEL and C1) as \e, \n, \t, ... or \xHH, and each byte that
// is not UTF-8 as \xHH. A file name or a command line can then neither
// send escape sequences to a terminal nor forge a line of output.
std::string printable(std::string_view text);
// Text for JSON: a backslash as \\ and each byte that is not UTF-8 as
// \xHH, the rest as it is (JSON escapes control characters itself). The
// original bytes come back by decoding the JSON string, then these two
// escapes; the document is always valid UTF-8.
std::string json_text(std::string_view text);

// Both write the message through printable().
void print_error(std::string_view message);
// A plain line on stderr: -v output and conflict reports.
void print_note(std::string_view message);

// The usage text of a subcommand, util-linux style: the synopsis lines, one
// line of summary, then one aligned line per option ("-w, --timeout DUR").
void print_help(std::ostream& out, std::string_view synopsis, std::string_view summary,
                const boost::program_options::options_description& options,
                std::string_view footer = {});

// Rows of cells as aligned columns, each cell through printable(); the
// first row is the header.
void print_table(std::ostream& out, const std::vector<std::vector<std::string>>& rows);

bool stderr_is_terminal() noexcept;

// One line on a terminal's stderr, rewritten in place and erased at the end,
// through printable() and cut to the terminal's width so that it never
// wraps (a wrapped line could not be erased).
class StatusLine final {
 public:
  StatusLine() = default;
  StatusLine(const StatusLine&) = delete;
  StatusLine& operator=(const StatusLine&) = delete;
  ~StatusLine() { erase(); }

  void show(std::string_view text);
  void erase();

 private:
  bool shown_ = false;
};

}  // namespace packlock::cli
