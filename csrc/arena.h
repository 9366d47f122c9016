// Explicit memory: every long-lived tensor (parameters, gradients, optimizer state,
// activations, KV caches) is requested in an ArenaPlan up front; one Arena then makes a single
// allocation and hands out views. The plan prints as a budget table, so every run states what
// it will use before it starts, and nothing is allocated in the hot loop.
#pragma once

#include <cstddef>
#include <iosfwd>
#include <string>
#include <vector>

#include "csrc/tensor.h"

namespace beaver {

class ArenaPlan {
 public:
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    size_t offset;  // bytes from the arena start, 256-byte aligned
    size_t bytes;
  };
  // Returns the handle (an index) of the new entry. Names must be unique.
  size_t add(std::string name, DType dtype, Shape shape);
  size_t total_bytes() const { return total_; }
  const std::vector<Entry>& entries() const { return entries_; }
  // A table of entries (grouped by the name's first dotted component) and the total.
  void print_budget(std::ostream& os, const std::string& title) const;

 private:
  std::vector<Entry> entries_;
  size_t total_ = 0;
};

class Arena {
 public:
  Arena() = default;
  Arena(const ArenaPlan& plan, Device device);
  Tensor operator[](size_t handle) const;
  // Looks an entry up by name; throws naming the missing entry.
  Tensor get(const std::string& name) const;
  Device device() const { return buf_.device(); }
  size_t bytes() const { return buf_.size(); }
  void zero() const;

 private:
  ArenaPlan plan_;
  Buffer buf_;
};

// "1.50 GiB", "12.0 KiB", ...
std::string format_bytes(size_t bytes);

}  // namespace beaver
