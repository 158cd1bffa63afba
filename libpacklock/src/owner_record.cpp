#include "owner_record.hpp"

#include <pthread.h>

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <mutex>

#include <nlohmann/json.hpp>

#include "fork.hpp"
#include "lock_table.hpp"
#include "unique_fd.hpp"

namespace packlock {
namespace {

using detail::UniqueFd;
using Json = nlohmann::json;

constexpr std::string_view kTimeKey = ",\"acquired_at\":\"";
constexpr std::string_view kTokenKey = ",\"token\":\"";
constexpr std::string_view kCheckKey = ",\"check\":\"";
constexpr std::string_view kTimePlaceholder = "0000-00-00T00:00:00.000000000Z";
constexpr std::string_view kTokenPlaceholder = "00000000000000000000000000000000";
constexpr std::string_view kCheckPlaceholder = "0000000000000000";
constexpr std::size_t kCommandMax = 256;
constexpr std::size_t kBlock = 512;
constexpr std::int64_t kPidMax = 1 << 22;  // the kernel's PID_MAX_LIMIT
constexpr int kReadTries = 3;

// FNV-1a, 64 bits: the record's check against torn reads, not a MAC.
constexpr std::uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
std::uint64_t fnv1a(std::uint64_t hash, std::string_view bytes) noexcept {
  for (const char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

void write_hex(std::uint64_t value, char* out) noexcept {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i, value >>= 4) out[i] = kDigits[value & 0xf];
}

void write_digits(long long value, int width, char* out) noexcept {
  for (int i = width - 1; i >= 0; --i, value /= 10) out[i] = static_cast<char>('0' + value % 10);
}

// "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ", always 30 characters; false outside the
// years 1000-9999.
bool format_utc(std::chrono::system_clock::time_point time, char* out) noexcept {
  using namespace std::chrono;
  const auto ns = duration_cast<nanoseconds>(time.time_since_epoch());
  const auto day = floor<days>(ns);
  const year_month_day date{sys_days{day}};
  const hh_mm_ss clock{ns - day};
  const int y = static_cast<int>(date.year());
  if (y < 1000 || y > 9999) return false;
  std::memcpy(out, kTimePlaceholder.data(), kTimePlaceholder.size());
  write_digits(y, 4, out);
  write_digits(static_cast<unsigned>(date.month()), 2, out + 5);
  write_digits(static_cast<unsigned>(date.day()), 2, out + 8);
  write_digits(clock.hours().count(), 2, out + 11);
  write_digits(clock.minutes().count(), 2, out + 14);
  write_digits(clock.seconds().count(), 2, out + 17);
  write_digits(clock.subseconds().count(), 9, out + 20);
  return true;
}

template <typename T>
bool parse_digits(std::string_view text, T& value) noexcept {
  if (text.empty() || text.front() < '0' || text.front() > '9') return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

std::optional<std::chrono::system_clock::time_point> parse_utc(std::string_view text) noexcept {
  using namespace std::chrono;
  if (text.size() != kTimePlaceholder.size()) return std::nullopt;
  for (const std::size_t at : {std::size_t{4}, std::size_t{7}}) if (text[at] != '-') return std::nullopt;
  if (text[10] != 'T' || text[13] != ':' || text[16] != ':' || text[19] != '.' || text[29] != 'Z') {
    return std::nullopt;
  }
  int y = 0;
  unsigned mo = 0, d = 0, h = 0, mi = 0, s = 0;
  long long frac = 0;
  if (!parse_digits(text.substr(0, 4), y) || !parse_digits(text.substr(5, 2), mo) ||
      !parse_digits(text.substr(8, 2), d) || !parse_digits(text.substr(11, 2), h) ||
      !parse_digits(text.substr(14, 2), mi) || !parse_digits(text.substr(17, 2), s) ||
      !parse_digits(text.substr(20, 9), frac)) {
    return std::nullopt;
  }
  const year_month_day date{year{y}, month{mo}, day{d}};
  if (!date.ok() || h > 23 || mi > 59 || s > 59) return std::nullopt;
  return time_point_cast<system_clock::duration>(sys_days{date} + hours{h} + minutes{mi} +
                                                 seconds{s} + nanoseconds{frac});
}

// --- reading the record ------------------------------------------------------

std::optional<std::int64_t> integer_field(const Json& object, const char* key, std::int64_t low,
                                          std::int64_t high) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_number_integer()) return std::nullopt;
  if (it->is_number_unsigned()) {  // every non-negative number parses as unsigned
    const auto value = it->get<std::uint64_t>();
    if (value > static_cast<std::uint64_t>(high)) return std::nullopt;
    if (static_cast<std::int64_t>(value) < low) return std::nullopt;
    return static_cast<std::int64_t>(value);
  }
  const auto value = it->get<std::int64_t>();
  if (value < low || value > high) return std::nullopt;
  return value;
}

std::optional<std::uint64_t> unsigned_field(const Json& object, const char* key) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_number_unsigned()) return std::nullopt;
  return it->get<std::uint64_t>();
}

std::optional<std::string> string_field(const Json& object, const char* key, std::size_t max) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return std::nullopt;
  const auto& text = it->get_ref<const std::string&>();
  if (text.size() > max) return std::nullopt;
  return text;
}

bool is_hex(std::string_view text, std::size_t size) noexcept {
  return text.size() == size && text.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

std::optional<OwnerRecord> record_from(const Json& object) {
  const auto version = integer_field(object, "version", 0, INT_MAX);
  const auto pid = integer_field(object, "pid", 1, kPidMax);
  const auto host = string_field(object, "host", 255);
  const auto boot_id = string_field(object, "boot_id", 64);
  const auto pid_namespace = unsigned_field(object, "pid_namespace");
  const auto start_time = unsigned_field(object, "start_time");
  const auto mode = string_field(object, "mode", 16);
  const auto command = string_field(object, "command", kOwnerRecordMaxSize);
  const auto heartbeat = integer_field(object, "heartbeat_ns", 1, INT64_MAX);
  const auto stale_after = integer_field(object, "stale_after_ns", 1, INT64_MAX);
  const auto acquired_at = string_field(object, "acquired_at", kTimePlaceholder.size());
  const auto token = string_field(object, "token", kTokenPlaceholder.size());
  if (!version || *version != kOwnerRecordVersion || !pid || !host || host->empty() || !boot_id ||
      !pid_namespace || !start_time || !mode || (*mode != "exclusive" && *mode != "shared") ||
      !command || !heartbeat || !stale_after || !acquired_at || !token ||
      !is_hex(*token, kTokenPlaceholder.size())) {
    return std::nullopt;
  }
  const auto time = parse_utc(*acquired_at);
  if (!time) return std::nullopt;
  OwnerRecord record;
  record.version = static_cast<int>(*version);
  record.pid = static_cast<pid_t>(*pid);
  record.host = *host;
  record.boot_id = *boot_id;
  record.pid_namespace = *pid_namespace;
  record.start_time = *start_time;
  record.mode = *mode == "exclusive" ? Mode::exclusive : Mode::shared;
  record.command = *command;
  record.heartbeat = std::chrono::nanoseconds(*heartbeat);
  record.stale_after = std::chrono::nanoseconds(*stale_after);
  record.acquired_at = *time;
  record.token = *token;
  return record;
}

// The record's line if its check matches.
std::optional<std::string_view> checked_line(std::string_view content) noexcept {
  content = content.substr(0, kOwnerRecordMaxSize);
  const auto newline = content.find('\n');
  if (newline == std::string_view::npos) return std::nullopt;
  const std::string_view line = content.substr(0, newline);
  const auto check_at = line.rfind(kCheckKey);
  if (check_at == std::string_view::npos) return std::nullopt;
  const std::string_view check = line.substr(check_at + kCheckKey.size());
  if (check.size() != kCheckPlaceholder.size() + 2 || check.substr(16) != "\"}") return std::nullopt;
  char expected[16];
  write_hex(fnv1a(kFnvOffset, line.substr(0, check_at)), expected);
  if (check.substr(0, 16) != std::string_view(expected, 16)) return std::nullopt;
  return line;
}

// --- process facts -------------------------------------------------------------

std::string read_small_file(const char* path, std::size_t max) {
  const UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return {};
  std::string text(max, '\0');
  std::size_t size = 0;
  while (size < max) {
    const ssize_t n = ::read(fd.get(), text.data() + size, max - size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    size += static_cast<std::size_t>(n);
  }
  text.resize(size);
  return text;
}

// Fields 3 (state) and 22 (start time) of /proc/PID/stat. The command name
// in field 2 may hold spaces and parentheses: fields are counted after the
// last ')'.
struct StatFields {
  char state = '?';
  std::uint64_t start_time = 0;
};

std::optional<StatFields> read_stat(const std::string& path) {
  const std::string text = read_small_file(path.c_str(), 4096);
  const auto close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::string_view rest = std::string_view(text).substr(close + 1);
  StatFields fields;
  for (int field = 3; field <= 22; ++field) {
    const auto begin = rest.find_first_not_of(' ');
    if (begin == std::string_view::npos) return std::nullopt;
    rest.remove_prefix(begin);
    const auto end = std::min(rest.find(' '), rest.size());
    const std::string_view token = rest.substr(0, end);
    if (field == 3) fields.state = token.empty() ? '?' : token.front();
    if (field == 22 && !parse_digits(token, fields.start_time)) return std::nullopt;
    rest.remove_prefix(end);
  }
  return fields;
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\0')) {
    text.pop_back();
  }
  return text;
}

std::shared_ptr<const detail::ProcessFacts> read_process_facts() {
  auto facts = std::make_shared<detail::ProcessFacts>();
  facts->pid = ::getpid();
  std::array<char, 256> host{};
  if (::gethostname(host.data(), host.size() - 1) == 0) facts->host = host.data();
  if (facts->host.empty()) facts->host = "localhost";
  facts->boot_id = trimmed(read_small_file("/proc/sys/kernel/random/boot_id", 64));
  struct stat ns {};
  if (::stat("/proc/self/ns/pid", &ns) == 0) facts->pid_namespace = ns.st_ino;
  if (const auto stat = read_stat("/proc/self/stat")) facts->start_time = stat->start_time;
  std::string command = read_small_file("/proc/self/cmdline", kCommandMax + 1);
  for (char& c : command) {
    if (c == '\0') c = ' ';
  }
  facts->command = trimmed(std::move(command));
  return facts;
}

// 64 random bits (splitmix64 over one atomic state), seeded from
// getrandom(2) in each process: a forked child reseeds, so parent and child
// never hand out the same tokens. No thread-local state: reaching it from a
// shared library costs a call on every acquisition.
std::uint64_t random64() noexcept {
  static std::atomic<std::uint64_t> state{0};
  static std::atomic<unsigned> seeded_in{~0u};  // the fork generation seeded
  const unsigned generation = detail::fork_generation();
  if (seeded_in.load(std::memory_order_acquire) != generation) {
    std::uint64_t seed = 0;
    if (::getrandom(&seed, sizeof seed, GRND_NONBLOCK) != sizeof seed) {
      seed = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
             (static_cast<std::uint64_t>(::getpid()) << 32);
    }
    state.store(seed, std::memory_order_relaxed);
    seeded_in.store(generation, std::memory_order_release);
  }
  constexpr std::uint64_t kGamma = 0x9e3779b97f4a7c15ULL;
  std::uint64_t z = state.fetch_add(kGamma, std::memory_order_relaxed) + kGamma;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The JSON line of `record`, with `acquired_at` and `token` as given and the
// check computed. Members in the order the format documents.
std::string record_line(const OwnerRecord& record, std::string_view acquired_at,
                        std::string_view token) {
  nlohmann::ordered_json object;
  object["version"] = record.version;
  object["pid"] = record.pid;
  object["host"] = record.host;
  object["boot_id"] = record.boot_id;
  object["pid_namespace"] = record.pid_namespace;
  object["start_time"] = record.start_time;
  object["mode"] = std::string(to_string(record.mode));
  object["command"] = record.command.substr(0, kCommandMax);
  object["heartbeat_ns"] = record.heartbeat.count();
  object["stale_after_ns"] = record.stale_after.count();
  object["acquired_at"] = std::string(acquired_at);
  object["token"] = std::string(token);
  object["check"] = std::string(kCheckPlaceholder);
  std::string line = object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const auto check_at = line.rfind(kCheckKey);
  write_hex(fnv1a(kFnvOffset, std::string_view(line).substr(0, check_at)),
            line.data() + check_at + kCheckKey.size());
  return line;
}

std::string padded_block(std::string line) {
  line += '\n';
  line.resize((line.size() + kBlock - 1) / kBlock * kBlock, ' ');
  return line;
}

}  // namespace

std::optional<OwnerRecord> parse_owner_record(std::string_view content) noexcept try {
  const auto line = checked_line(content);
  if (!line) return std::nullopt;
  const Json object = Json::parse(line->begin(), line->end(), nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded() || !object.is_object()) return std::nullopt;
  return record_from(object);
} catch (...) {
  return std::nullopt;
}

std::optional<OwnerRecord> read_owner_record(int fd) noexcept {
  std::array<char, kOwnerRecordMaxSize> buffer;
  for (int attempt = 0; attempt < kReadTries; ++attempt) {
    const ssize_t n = ::pread(fd, buffer.data(), buffer.size(), 0);
    if (n <= 0) return std::nullopt;
    const std::string_view content(buffer.data(), static_cast<std::size_t>(n));
    if (!checked_line(content)) continue;  // torn or malformed: look again
    return parse_owner_record(content);
  }
  return std::nullopt;
}

std::optional<OwnerRecord> read_owner_record(const std::filesystem::path& pack,
                                             const std::string& sidecar_name) noexcept {
  const UniqueFd dir(::open(pack.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return std::nullopt;
  // Refuse what is not a regular file before opening it: opening a device
  // node can have effects of its own.
  struct stat by_path {}, by_fd {};
  if (::fstatat(dir.get(), sidecar_name.c_str(), &by_path, AT_SYMLINK_NOFOLLOW) != 0 ||
      !S_ISREG(by_path.st_mode)) {
    return std::nullopt;
  }
  const UniqueFd fd(::openat(dir.get(), sidecar_name.c_str(),
                             O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK));
  if (!fd || ::fstat(fd.get(), &by_fd) != 0 || by_fd.st_ino != by_path.st_ino ||
      by_fd.st_dev != by_path.st_dev) {
    return std::nullopt;
  }
  return read_owner_record(fd.get());
}

std::string format_owner_record(const OwnerRecord& record) {
  std::array<char, kTimePlaceholder.size()> time;
  if (!format_utc(record.acquired_at, time.data())) {
    std::memcpy(time.data(), kTimePlaceholder.data(), time.size());
  }
  return padded_block(
      record_line(record, std::string_view(time.data(), time.size()), record.token));
}

OwnerLiveness liveness_of(const OwnerRecord& record) noexcept try {
  const auto facts = detail::process_facts();
  if (record.host != facts->host || record.boot_id != facts->boot_id ||
      record.pid_namespace != facts->pid_namespace) {
    return OwnerLiveness::other_host;
  }
  const auto start_time = detail::process_start_time(record.pid);
  if (!start_time) return OwnerLiveness::dead;
  return *start_time == record.start_time ? OwnerLiveness::alive : OwnerLiveness::pid_reused;
} catch (...) {
  return OwnerLiveness::other_host;  // cannot tell
}

namespace detail {

namespace {

// Never held across a fork: a child reads its own facts.
std::mutex facts_mutex;
[[maybe_unused]] const int facts_fork_handlers = ::pthread_atfork(
    [] { facts_mutex.lock(); }, [] { facts_mutex.unlock(); }, [] { facts_mutex.unlock(); });

}  // namespace

std::shared_ptr<const ProcessFacts> process_facts() {
  static auto* cached = new std::shared_ptr<const ProcessFacts>;  // never destroyed
  static unsigned generation = 0;
  std::lock_guard lock(facts_mutex);
  if (!*cached || generation != fork_generation()) {
    *cached = read_process_facts();
    generation = fork_generation();
  }
  return *cached;
}

std::optional<std::uint64_t> process_start_time(pid_t pid) noexcept try {
  if (pid <= 0) return std::nullopt;
  const auto stat = read_stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat || stat->state == 'Z' || stat->state == 'X') return std::nullopt;
  return stat->start_time;
} catch (...) {
  return std::nullopt;
}

OwnerRecord record_of_this_process(const LockOptions& options) {
  const auto facts = process_facts();
  OwnerRecord record;
  record.pid = facts->pid;
  record.host = facts->host;
  record.boot_id = facts->boot_id;
  record.pid_namespace = facts->pid_namespace;
  record.start_time = facts->start_time;
  if (options.record_command) record.command = options.command ? *options.command : facts->command;
  const Timing timing = resolved_timing(options.heartbeat, options.stale_after);
  record.heartbeat = timing.heartbeat;
  record.stale_after = timing.stale_after;
  return record;
}

OwnerRecordWriter::OwnerRecordWriter(const LockOptions& options)
    : heartbeat_(options.heartbeat),
      stale_after_(options.stale_after),
      command_(options.command),
      record_command_(options.record_command) {}

bool OwnerRecordWriter::build(Template& out) const try {
  LockOptions options;
  options.heartbeat = heartbeat_;
  options.stale_after = stale_after_;
  options.command = command_;
  options.record_command = record_command_;
  OwnerRecord record = record_of_this_process(options);
  std::string line = record_line(record, kTimePlaceholder, kTokenPlaceholder);
  if (line.size() >= kOwnerRecordMaxSize) {  // only with a hostile host name
    record.command.clear();
    line = record_line(record, kTimePlaceholder, kTokenPlaceholder);
    if (line.size() >= kOwnerRecordMaxSize) return false;
  }
  out.time_at = line.find(kTimeKey) + kTimeKey.size();
  out.token_at = line.find(kTokenKey) + kTokenKey.size();
  out.check_at = line.rfind(kCheckKey);
  out.prefix_hash = fnv1a(kFnvOffset, std::string_view(line).substr(0, out.time_at));
  out.block = padded_block(std::move(line));
  return true;
} catch (...) {
  return false;
}

// Built once: a Pack, hence its writer, belongs to the process that opened
// it (a forked child reopens the pack, and writes its own pid).
const OwnerRecordWriter::Template* OwnerRecordWriter::current() const noexcept try {
  std::call_once(built_, [this] {
    auto fresh = std::make_shared<Template>();
    if (build(*fresh)) template_ = std::move(fresh);
  });
  return template_.get();
} catch (...) {
  return nullptr;
}

void OwnerRecordWriter::prepare() const noexcept {
  current();
  random64();  // seeds the generator
}

std::size_t OwnerRecordWriter::render(Block& block,
                                      std::chrono::system_clock::time_point acquired_at) const noexcept {
  const Template* current_template = current();
  if (!current_template) return 0;
  const Template& t = *current_template;
  std::memcpy(block.data(), t.block.data(), t.block.size());
  format_utc(acquired_at, block.data() + t.time_at);  // else the placeholder: unknown owner
  write_hex(random64(), block.data() + t.token_at);
  write_hex(random64(), block.data() + t.token_at + 16);
  const std::uint64_t check =
      fnv1a(t.prefix_hash, std::string_view(block.data() + t.time_at, t.check_at - t.time_at));
  write_hex(check, block.data() + t.check_at + kCheckKey.size());
  return t.block.size();
}

int OwnerRecordWriter::clear(int fd, std::size_t size) noexcept {
  static const Block blank = [] {
    Block spaces;
    spaces.fill(' ');
    spaces.back() = '\n';
    return spaces;
  }();
  size = std::min(size, blank.size());
  return write(fd, std::string_view(blank.data() + blank.size() - size, size));
}

int OwnerRecordWriter::write(int fd, std::string_view block) noexcept {
  const ssize_t written = ::pwrite(fd, block.data(), block.size(), 0);
  if (written == static_cast<ssize_t>(block.size())) return 0;
  return written < 0 ? errno : EIO;
}

}  // namespace detail
}  // namespace packlock
