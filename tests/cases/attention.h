// The attention cases, written once and read by the CPU test (tests/test_attention.cpp), the
// GPU test (tests/gpu/test_attention.cpp) and the CPU bench (bench/attention/cpu.cpp).
#pragma once

#include <cstdint>
#include <vector>

namespace beaver::cases {

// B rows of S positions, nh query heads sharing nkv key/value heads of size d; row b holds
// its tokens at positions [ranges[2b], ranges[2b + 1]) (left/right padding, empty rows).
struct AttentionCase {
  int B, S, nh, nkv, d;
  std::vector<int32_t> ranges;  // [B, 2]
};
// Head sizes the CUDA kernels are built for; the CPU twin takes any.
inline bool cuda_head_dim(int d) { return d == 64 || d == 128; }

// Prefill forward and backward: full, padded and empty rows, MHA, GQA and MQA, lengths that
// span several 64-key blocks or end in a partial one, and odd head sizes (CPU only).
inline const std::vector<AttentionCase> kAttention = {
    {3, 77, 4, 2, 64, {0, 77, 5, 77, 0, 40}},             // full, left pad, right pad
    {2, 150, 4, 1, 128, {3, 140, 0, 150}},                // both pads, MQA
    {2, 1, 2, 2, 128, {0, 1, 0, 0}},                      // one token, an empty row
    {2, 200, 8, 2, 64, {0, 0, 70, 133}},                  // empty row, middle range
    {1, 130, 2, 2, 128, {0, 130}},                        // odd length, MHA
    {4, 150, 4, 2, 16, {0, 150, 37, 150, 0, 131, 70, 70}},  // blocks not starting at 0
    {2, 90, 6, 1, 13, {11, 90, 0, 77}},                   // odd head size, MQA
    {2, 70, 2, 2, 64, {0, 70, 5, 66}},
};

// Decode of one query per row against a KV cache of Smax positions.
struct DecodeCase {
  int B, nh, nkv, d, Smax;
  std::vector<int32_t> ranges;  // [B, 2]
};
inline const std::vector<DecodeCase> kDecode = {
    {3, 8, 2, 128, 700, {0, 700, 100, 650, 5, 5}},  // groups of 4, several splits, empty row
    {2, 6, 3, 64, 1500, {0, 1, 0, 1500}},           // groups of 2, one-row range
    {1, 4, 4, 128, 300, {17, 299}},                 // MHA
    {2, 3, 1, 64, 2049, {1000, 2049, 0, 2048}},     // group of 3 (one head per pass)
};

// kv_append of n new rows per batch row at positions pos into a cache of Smax positions:
// 16-byte rows and 24-byte rows (the GPU's element-wise path).
struct KvAppendCase {
  int B, n, nkv, d, Smax;
  std::vector<int32_t> pos;  // [B]
};
inline const std::vector<KvAppendCase> kKvAppend = {
    {3, 5, 2, 64, 20, {0, 7, 15}}, {2, 1, 1, 12, 9, {8, 3}}, {1, 33, 4, 128, 40, {7}}};

// Throughput (CPU): causal prefill of one row with 8 query heads of 64 at S = 256 and 512, MHA
// (8 key heads) and GQA (2), and decode of 4 rows over 1024 cached positions.
inline constexpr int64_t kAttentionBenchHeads = 8, kAttentionBenchDim = 64;
inline const std::vector<int64_t> kAttentionBenchS = {256, 512};
inline const std::vector<int64_t> kAttentionBenchDecodeLen = {1024};
inline const std::vector<int64_t> kAttentionBenchKvHeads = {8, 2};

}  // namespace beaver::cases
