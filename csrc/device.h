// Device memory and availability, the only place host code touches the CUDA runtime for
// allocation. In a build without CUDA every device function throws a clear error.
#pragma once

#include <cstddef>
#include <string>

#include "csrc/tensor.h"

namespace beaver {

// True when this build has the CUDA backend and a usable device is present. Otherwise false,
// with the reason in *why (no CUDA in the build, no device, driver too old, ...).
bool cuda_available(std::string* why = nullptr);

void* device_malloc(size_t bytes);
void device_free(void* p) noexcept;
// Synchronous copy between host and device or device and device.
void device_memcpy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
void device_memset(void* p, int value, size_t bytes);
void device_synchronize();

}  // namespace beaver
