#include "record_page.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <utility>

#include "unique_fd.hpp"

namespace packlock::detail {

RecordPage::RecordPage(RecordPage&& other) noexcept
    : address_(std::exchange(other.address_, nullptr)),
      made_(std::exchange(other.made_, false)),
      dev_(other.dev_),
      ino_(other.ino_) {}

RecordPage& RecordPage::operator=(RecordPage&& other) noexcept {
  if (this != &other) {
    if (address_) ::munmap(address_, kSize);
    address_ = std::exchange(other.address_, nullptr);
    made_ = std::exchange(other.made_, false);
    dev_ = other.dev_;
    ino_ = other.ino_;
  }
  return *this;
}

RecordPage::~RecordPage() {
  if (address_) ::munmap(address_, kSize);
}

RecordPage RecordPage::map(int fd, dev_t dev, ino_t ino) noexcept {
  // The /proc link reopens exactly the inode `fd` has open, even if the
  // path has changed since; O_NOFOLLOW does not apply to these links.
  RecordPage page;
  page.made_ = true;
  page.dev_ = dev;
  page.ino_ = ino;
  std::array<char, 32> link;
  std::snprintf(link.data(), link.size(), "/proc/self/fd/%d", fd);
  const UniqueFd own(::open(link.data(), O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!own) return page;
  void* const address = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, own.get(), 0);
  if (address != MAP_FAILED) page.address_ = address;
  return page;
}

bool RecordPage::store(std::string_view block, std::int64_t file_size) noexcept {
  if (!address_ || block.size() > kSize || file_size < static_cast<std::int64_t>(block.size())) {
    return false;
  }
  std::memcpy(address_, block.data(), block.size());
  return true;
}

}  // namespace packlock::detail
