#include "csrc/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

#include "csrc/device.h"

namespace beaver {

namespace {
// Fills the inline dims from [d, d + n) (no heap: shapes are built on every op call).
void fill_dims(Shape& s, const int64_t* d, size_t n) {
  BEAVER_CHECK(n <= size_t(kMaxDims), "shape of rank ", n, " exceeds ", kMaxDims);
  s.rank = int(n);
  for (size_t i = 0; i < n; ++i) {
    BEAVER_CHECK(d[i] >= 0, "negative dimension ", d[i], " in shape");
    s.dims[i] = d[i];
  }
}
}  // namespace

Shape::Shape(std::initializer_list<int64_t> d) { fill_dims(*this, d.begin(), d.size()); }

Shape::Shape(const std::vector<int64_t>& d) { fill_dims(*this, d.data(), d.size()); }

bool Shape::operator==(const Shape& o) const {
  if (rank != o.rank) return false;
  for (int i = 0; i < rank; ++i)
    if (dims[size_t(i)] != o.dims[size_t(i)]) return false;
  return true;
}

std::string Shape::str() const {
  std::ostringstream os;
  os << '[';
  for (int i = 0; i < rank; ++i) os << (i ? ", " : "") << dims[size_t(i)];
  os << ']';
  return os.str();
}

Tensor Tensor::view(Shape s) const {
  BEAVER_CHECK(s.numel() == numel(), "cannot view ", str(), " as ", s.str());
  return Tensor(data, dtype, s, device);
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  BEAVER_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= size(0), "slice [", begin,
               ", ", end, ") out of range for ", str());
  Shape s = shape;
  s.dims[0] = end - begin;
  const size_t row = rank() ? size_t(shape.numel() / (size(0) ? size(0) : 1)) : 1;
  auto* p = static_cast<char*>(data) + size_t(begin) * row * dtype_size(dtype);
  return Tensor(p, dtype, s, device);
}

std::string Tensor::str() const {
  return cat(dtype_name(dtype), shape.str(), " ", device_name(device));
}

void expect_shape(const Tensor& t, const Shape& s, std::string_view op, std::string_view name) {
  if (!(t.shape == s))
    BEAVER_FAIL(op, ": ", name, " has shape ", t.shape.str(), " but expected ", s.str());
}
void expect_rank(const Tensor& t, int rank, std::string_view op, std::string_view name) {
  if (t.rank() != rank)
    BEAVER_FAIL(op, ": ", name, " has rank ", t.rank(), " (shape ", t.shape.str(),
                ") but expected rank ", rank);
}
void expect_dtype(const Tensor& t, DType d, std::string_view op, std::string_view name) {
  if (t.dtype != d)
    BEAVER_FAIL(op, ": ", name, " has dtype ", dtype_name(t.dtype), " but expected ",
                dtype_name(d));
}
void expect_defined(const Tensor& t, std::string_view op, std::string_view name) {
  if (t.data == nullptr && t.numel() != 0)
    BEAVER_FAIL(op, ": ", name, " is missing (null data with shape ", t.shape.str(), ")");
}

Device common_device(std::initializer_list<const Tensor*> ts, std::string_view op) {
  bool have = false;
  Device d = Device::CPU;
  for (const Tensor* t : ts) {
    if (t == nullptr || t->data == nullptr) continue;
    if (!have) {
      d = t->device;
      have = true;
    } else if (t->device != d) {
      BEAVER_FAIL(op, ": tensors on different devices (", device_name(d), " and ",
                  device_name(t->device), ")");
    }
  }
  return d;
}

Buffer::Buffer(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (bytes == 0) return;
  void* p = nullptr;
  if (device == Device::CPU) {
    const size_t rounded = (bytes + 255) / 256 * 256;
    p = std::aligned_alloc(256, rounded);
    if (p == nullptr) BEAVER_FAIL("host allocation of ", bytes, " bytes failed");
  } else {
    p = device_malloc(bytes);
  }
  ptr_ = std::unique_ptr<void, BufferFree>(p, BufferFree{device});
}

void BufferFree::operator()(void* p) const {
  if (device == Device::CPU)
    std::free(p);
  else
    device_free(p);
}

OwnedTensor::OwnedTensor(DType dtype, Shape shape, Device device)
    : buf_(size_t(shape.numel()) * dtype_size(dtype), device),
      view_(buf_.data(), dtype, shape, device) {}

void copy_tensor(const Tensor& dst, const Tensor& src) {
  BEAVER_CHECK(dst.nbytes() == src.nbytes() && dst.dtype == src.dtype, "copy from ", src.str(),
               " to ", dst.str(), ": sizes or dtypes differ");
  if (dst.nbytes() == 0) return;
  if (dst.device == Device::CPU && src.device == Device::CPU)
    std::memcpy(dst.data, src.data, dst.nbytes());
  else
    device_memcpy(dst.data, dst.device, src.data, src.device, dst.nbytes());
}

void zero_tensor(const Tensor& t) {
  if (t.nbytes() == 0) return;
  if (t.device == Device::CPU)
    std::memset(t.data, 0, t.nbytes());
  else
    device_memset(t.data, 0, t.nbytes());
}

std::vector<float> to_host_f32(const Tensor& t) {
  BEAVER_CHECK(is_float(t.dtype), "to_host_f32 needs a float tensor, got ", t.str());
  std::vector<char> raw(t.nbytes());
  if (t.nbytes()) {
    if (t.device == Device::CPU)
      std::memcpy(raw.data(), t.data, t.nbytes());
    else
      device_memcpy(raw.data(), Device::CPU, t.data, t.device, t.nbytes());
  }
  std::vector<float> out(size_t(t.numel()));
  for (size_t i = 0; i < out.size(); ++i) {
    if (t.dtype == DType::F32) {
      std::memcpy(&out[i], raw.data() + 4 * i, 4);
    } else {
      uint16_t b;
      std::memcpy(&b, raw.data() + 2 * i, 2);
      out[i] = t.dtype == DType::BF16 ? to_f32(bf16{b}) : to_f32(f16{b});
    }
  }
  return out;
}

}  // namespace beaver
