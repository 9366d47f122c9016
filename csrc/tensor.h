// Tensor views: a data pointer, an element type, a shape and a device. Views never own memory;
// owners are Buffer (one allocation), OwnedTensor (a Buffer shaped as one tensor) and Arena
// (many tensors planned up front, csrc/arena.h). All tensors are dense and row-major
// (C order, no strides): every op documents its layout in terms of the shape alone.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "csrc/dtype.h"
#include "csrc/error.h"

namespace beaver {

enum class Device : uint8_t { CPU, CUDA };
constexpr std::string_view device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

constexpr int kMaxDims = 6;

struct Shape {
  std::array<int64_t, kMaxDims> dims{};
  int rank = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> d);
  explicit Shape(const std::vector<int64_t>& d);

  int64_t operator[](int i) const { return dims[size_t(i < 0 ? i + rank : i)]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= dims[size_t(i)];
    return n;
  }
  std::vector<int64_t> vec() const { return {dims.begin(), dims.begin() + rank}; }
  bool operator==(const Shape& o) const;
  std::string str() const;  // "[2, 3, 4]"
};

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::BF16; };
template <> struct dtype_of<f16> { static constexpr DType value = DType::F16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::I32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::I64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::U8; };

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  Shape shape;
  Device device = Device::CPU;

  Tensor() = default;
  Tensor(void* p, DType t, Shape s, Device d = Device::CPU)
      : data(p), dtype(t), shape(s), device(d) {}

  bool defined() const { return data != nullptr || (shape.rank > 0 && shape.numel() == 0); }
  int rank() const { return shape.rank; }
  int64_t size(int i) const { return shape[i]; }
  int64_t numel() const { return shape.numel(); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }

  // Typed pointer; throws when T does not match the dtype.
  template <typename T>
  T* ptr() const {
    if (dtype_of<T>::value != dtype)
      BEAVER_FAIL("tensor of dtype ", dtype_name(dtype), " accessed as ",
                  dtype_name(dtype_of<T>::value));
    return static_cast<T*>(data);
  }

  // Same memory, another shape with the same element count.
  Tensor view(Shape s) const;
  // Rows [begin, end) along dimension 0.
  Tensor slice(int64_t begin, int64_t end) const;
  std::string str() const;  // "f32[2, 3] cpu"
};

// ---- Argument checks used by every op: they name the op and the argument ------------------
void expect_shape(const Tensor& t, const Shape& s, std::string_view op, std::string_view name);
void expect_rank(const Tensor& t, int rank, std::string_view op, std::string_view name);
void expect_dtype(const Tensor& t, DType d, std::string_view op, std::string_view name);
void expect_defined(const Tensor& t, std::string_view op, std::string_view name);
// All defined tensors in the list share one device; returns it.
Device common_device(std::initializer_list<const Tensor*> ts, std::string_view op);

// ---- Owned memory ----------------------------------------------------------------------------
// Frees host memory with free() and device memory with cudaFree.
struct BufferFree {
  Device device = Device::CPU;
  void operator()(void* p) const;
};

// One allocation on a device: 256-byte aligned host memory, or cudaMalloc on the GPU.
class Buffer {
 public:
  Buffer() = default;
  Buffer(size_t bytes, Device device);
  Buffer(Buffer&&) noexcept = default;
  Buffer& operator=(Buffer&&) noexcept = default;

  void* data() const { return ptr_.get(); }
  size_t size() const { return bytes_; }
  Device device() const { return device_; }

 private:
  std::unique_ptr<void, BufferFree> ptr_;
  size_t bytes_ = 0;
  Device device_ = Device::CPU;
};

// A Buffer shaped as one tensor. Converts to a Tensor view.
class OwnedTensor {
 public:
  OwnedTensor() = default;
  OwnedTensor(DType dtype, Shape shape, Device device = Device::CPU);
  const Tensor& view() const { return view_; }
  operator const Tensor&() const { return view_; }  // NOLINT: views are how ops take tensors
  template <typename T>
  T* ptr() const { return view_.ptr<T>(); }
  int64_t numel() const { return view_.numel(); }

 private:
  Buffer buf_;
  Tensor view_;
};

// Copies between any two devices (sizes and dtypes must match).
void copy_tensor(const Tensor& dst, const Tensor& src);
// Zero-fills (any device).
void zero_tensor(const Tensor& t);
// Host copy as fp32 of a float tensor of any float dtype on any device.
std::vector<float> to_host_f32(const Tensor& t);

}  // namespace beaver
