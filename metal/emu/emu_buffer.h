// Device buffers for emulated-Metal harnesses: poisoned (0xFF bytes, NaN as float) so an element
// no thread writes is detectable, with guard zones before and after so an out-of-bounds write is
// detected (on a GPU both are silent). Plain host C++.
#pragma once

#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace metal_emu {

template <class T>
class DeviceBuffer {
 public:
  static constexpr size_t kGuard = 64;  // elements of guard zone on each side
  // n elements of poison.
  DeviceBuffer(std::string name, size_t n) : name_(std::move(name)), n_(n), bytes_(n + 2 * kGuard) {
    std::memset(static_cast<void*>(bytes_.data()), 0xFF, bytes_.size() * sizeof(T));
    std::memset(static_cast<void*>(bytes_.data()), kGuardByte, kGuard * sizeof(T));
    std::memset(static_cast<void*>(bytes_.data() + kGuard + n_), kGuardByte, kGuard * sizeof(T));
  }
  // A copy of host data (an input buffer).
  DeviceBuffer(std::string name, const T* src, size_t n) : DeviceBuffer(std::move(name), n) {
    std::memcpy(static_cast<void*>(data()), src, n * sizeof(T));
  }

  T* data() { return bytes_.data() + kGuard; }
  const T* data() const { return bytes_.data() + kGuard; }
  size_t size() const { return n_; }

  // Throws if a kernel wrote into a guard zone (past either end of the buffer).
  void check_bounds() const {
    const auto* raw = reinterpret_cast<const unsigned char*>(bytes_.data());
    const size_t guard_bytes = kGuard * sizeof(T), tail = (kGuard + n_) * sizeof(T);
    for (size_t k = 0; k < guard_bytes; ++k) {
      if (raw[k] != kGuardByte)
        throw std::runtime_error("metal_emu: a kernel wrote before the start of buffer '" + name_ + "'");
      if (raw[tail + k] != kGuardByte)
        throw std::runtime_error("metal_emu: a kernel wrote past the end of buffer '" + name_ + "' (" +
                                 std::to_string(n_) + " elements)");
    }
  }
  // Throws naming the first element that still holds the poison pattern (never written).
  void check_written() const {
    for (size_t i = 0; i < n_; ++i) {
      const auto* e = reinterpret_cast<const unsigned char*>(data() + i);
      bool poison = true;
      for (size_t b = 0; b < sizeof(T) && poison; ++b) poison = e[b] == 0xFF;
      if (poison)
        throw std::runtime_error("metal_emu: element " + std::to_string(i) + " of buffer '" + name_ +
                                 "' was never written");
    }
  }
  std::vector<T> to_vector() const { return std::vector<T>(data(), data() + n_); }

 private:
  static constexpr unsigned char kGuardByte = 0xA5;
  std::string name_;
  size_t n_;
  std::vector<T> bytes_;
};

}  // namespace metal_emu
