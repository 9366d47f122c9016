// Function multiversioning for the CPU twins' elementwise loops. The engine is compiled for the
// baseline x86-64 instruction set (SSE2), so a loop the compiler vectorises runs 4 lanes wide;
// a function marked BEAVER_CPU_CLONES is compiled three times (AVX-512, AVX2, baseline) and the
// loader picks the widest the CPU has, once. A file that uses it turns fp-contract off (as
// attention.cpp does), so that no build fuses a * b + c: every clone, vector body and scalar
// remainder alike, then computes each element with the same operations in the same order and
// gives the same bits, whatever the CPU and however the threads split the elements. Loops with
// reductions keep them in fixed lanes of their own (rmsnorm's 8 lanes), never in the vector
// width, for the same reason.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BEAVER_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define BEAVER_CPU_CLONES
#endif

// Code written with AVX-512 intrinsics goes between BEAVER_AVX512_CODE_BEGIN and
// BEAVER_AVX512_CODE_END: GCC 12's AVX-512 headers build some intrinsics (unpack, extract,
// shuffle) from a self-initialised "undefined" vector, which -Wuninitialized reports at every
// use; the vectors are defined.
#if defined(__GNUC__) && !defined(__clang__)
#define BEAVER_AVX512_CODE_BEGIN                               \
  _Pragma("GCC diagnostic push")                               \
  _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")       \
  _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define BEAVER_AVX512_CODE_END _Pragma("GCC diagnostic pop")
#else
#define BEAVER_AVX512_CODE_BEGIN
#define BEAVER_AVX512_CODE_END
#endif
