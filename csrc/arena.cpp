#include "csrc/arena.h"

#include <cstdio>
#include <map>
#include <ostream>

namespace beaver {

std::string format_bytes(size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

size_t ArenaPlan::add(std::string name, DType dtype, Shape shape) {
  for (const auto& e : entries_)
    BEAVER_CHECK(e.name != name, "arena plan: duplicate entry '", name, "'");
  const size_t bytes = size_t(shape.numel()) * dtype_size(dtype);
  const size_t offset = (total_ + 255) / 256 * 256;
  entries_.push_back(Entry{std::move(name), dtype, shape, offset, bytes});
  total_ = offset + bytes;
  return entries_.size() - 1;
}

void ArenaPlan::print_budget(std::ostream& os, const std::string& title) const {
  std::map<std::string, std::pair<size_t, size_t>> groups;  // group -> (tensors, bytes)
  for (const auto& e : entries_) {
    const auto dot = e.name.find('.');
    auto& g = groups[dot == std::string::npos ? e.name : e.name.substr(0, dot)];
    g.first += 1;
    g.second += e.bytes;
  }
  os << "memory plan: " << title << "\n";
  for (const auto& [name, g] : groups) {
    char line[160];
    std::snprintf(line, sizeof line, "  %-28s %6zu tensors %12s\n", name.c_str(), g.first,
                  format_bytes(g.second).c_str());
    os << line;
  }
  os << "  total " << format_bytes(total_) << "\n";
}

Arena::Arena(const ArenaPlan& plan, Device device)
    : plan_(plan), buf_(plan.total_bytes(), device) {}

Tensor Arena::operator[](size_t handle) const {
  BEAVER_CHECK(handle < plan_.entries().size(), "arena handle ", handle, " out of range");
  const auto& e = plan_.entries()[handle];
  return Tensor(static_cast<char*>(buf_.data()) + e.offset, e.dtype, e.shape, buf_.device());
}

Tensor Arena::get(const std::string& name) const {
  const auto& es = plan_.entries();
  for (size_t i = 0; i < es.size(); ++i)
    if (es[i].name == name) return (*this)[i];
  BEAVER_FAIL("arena has no entry named '", name, "'");
}

void Arena::zero() const {
  zero_tensor(Tensor(buf_.data(), DType::U8, Shape{int64_t(buf_.size())}, buf_.device()));
}

}  // namespace beaver
