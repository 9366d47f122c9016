// The precision plan (model/precision.h) and what it means for a model on the CPU: the plan per
// device, no working copy on the CPU (the ops read the fp32 master, so the CPU numbers are the
// fp32 reference), budgets that name the dtypes, an engine that never uses CUDA graphs on the
// CPU (and gives the same tokens whatever the flag), and Context::copy / zero on the CPU.
// The CUDA side of the plan runs in tests/gpu/test_llama_gpu.cpp.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "csrc/arena.h"
#include "csrc/cuda_graph.h"
#include "csrc/log.h"
#include "model/engine.h"
#include "model/llama.h"
#include "model/loader.h"
#include "model/precision.h"
#include "testutil.h"

namespace beaver::model {
namespace {

std::string fixture_dir() {
  const char* src = std::getenv("BEAVER_SOURCE_DIR");
  return std::string(src ? src : ".") + "/tests/data/golden/mha";
}

TEST(PrecisionPlan, PerDevice) {
  const PrecisionPlan cpu = PrecisionPlan::for_device(Device::CPU);
  EXPECT_EQ(cpu.master, DType::F32);
  EXPECT_EQ(cpu.grads, DType::F32);
  EXPECT_EQ(cpu.work, DType::F32);
  EXPECT_EQ(cpu.act, DType::F32);
  EXPECT_EQ(cpu.logits, DType::F32);
  EXPECT_FALSE(cpu.working_copy());
  const PrecisionPlan gpu = PrecisionPlan::for_device(Device::CUDA);
  EXPECT_EQ(gpu.master, DType::F32);
  EXPECT_EQ(gpu.grads, DType::F32);
  EXPECT_EQ(gpu.work, DType::BF16);
  EXPECT_EQ(gpu.act, DType::BF16);
  EXPECT_EQ(gpu.logits, DType::F32);
  EXPECT_TRUE(gpu.working_copy());
  // Inference on CUDA: one bf16 copy is both master and working params.
  const PrecisionPlan gpu_inf = PrecisionPlan::for_device(Device::CUDA, false);
  EXPECT_EQ(gpu_inf.master, DType::BF16);
  EXPECT_EQ(gpu_inf.work, DType::BF16);
  EXPECT_FALSE(gpu_inf.working_copy());
  EXPECT_EQ(PrecisionPlan::for_device(Device::CPU, false).master, DType::F32);
}

TEST(PrecisionPlan, CpuModelReadsTheMasterAndSaysSo) {
  Context ctx = Context::cpu(1);
  LlamaModel m(ctx, checkpoint_config(fixture_dir()),
               LlamaOptions{.head = Head::LM, .max_batch = 2, .max_seq = 8, .training = true});
  load_weights(m, fixture_dir());
  EXPECT_FALSE(m.flat_working_params().defined());
  for (const auto& p : m.params()) {
    EXPECT_EQ(m.working_param(p.name).data, m.param(p.name).data) << p.name;
    EXPECT_EQ(m.working_param(p.name).dtype, DType::F32) << p.name;
  }
  const std::string b = m.budget();
  EXPECT_NE(b.find("f32 master"), std::string::npos) << b;
  EXPECT_EQ(b.find("working copy"), std::string::npos) << b;
  EXPECT_NE(b.find("activations (f32"), std::string::npos) << b;
  EXPECT_EQ(m.precision().act, DType::F32);
  EXPECT_THROW((void)m.working_param("no.such.weight"), Error);
}

// By default each model logs its memory plan as one line with the total; the per-group table
// comes at debug level only.
TEST(PrecisionPlan, MemoryPlanIsOneSummaryLineUnlessDebug) {
  Context ctx = Context::cpu(1);
  const LlamaOptions o{.head = Head::LM, .max_batch = 2, .max_seq = 8, .training = true};
  auto count = [](const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
    return n;
  };
  set_log_threshold(LogLevel::Info);
  ::testing::internal::CaptureStderr();
  const LlamaModel m(ctx, checkpoint_config(fixture_dir()), o);
  const std::string info = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(count(info, "\n"), 1u) << info;
  EXPECT_EQ(count(info, "memory plan"), 1u) << info;
  EXPECT_EQ(count(info, " tensors "), 0u) << info;  // no breakdown rows
  EXPECT_NE(info.find("; total " + format_bytes(m.planned_bytes())), std::string::npos) << info;
  EXPECT_EQ(m.budget_summary().find('\n'), std::string::npos);
  // Training on the CPU: f32 parameters and as many gradients, plus the activations.
  int64_t n = 0;
  for (const auto& p : m.params()) n += p.shape.numel();
  EXPECT_GT(m.planned_bytes(), size_t(n) * 4 * 2);

  set_log_threshold(LogLevel::Debug);
  ::testing::internal::CaptureStderr();
  { const LlamaModel again(ctx, checkpoint_config(fixture_dir()), o); }
  const std::string debug = ::testing::internal::GetCapturedStderr();
  set_log_threshold(LogLevel::Info);
  EXPECT_GT(count(debug, " tensors "), 2u) << debug;
  EXPECT_NE(debug.find("memory plan: activations"), std::string::npos) << debug;
}

TEST(PrecisionPlan, CpuEngineNeverUsesCudaGraphs) {
  Context ctx = Context::cpu(1);
  LlamaModel m(ctx, checkpoint_config(fixture_dir()),
               LlamaOptions{.head = Head::LM, .max_batch = 2, .max_seq = 6, .training = false});
  load_weights(m, fixture_dir());
  GenerateOptions go;
  go.sampling.temperature = 0.0f;
  go.max_new_tokens = 12;
  go.eos_id = -1;
  const std::vector<std::vector<int32_t>> prompts = {{1, 40, 7, 99}, {1, 5, 88}};
  InferenceEngine with(m, 20, true), without(m, 20, false);
  EXPECT_FALSE(with.uses_cuda_graphs());
  EXPECT_NE(with.budget().find("KV cache f32"), std::string::npos) << with.budget();
  const auto a = with.generate(prompts, go), b = without.generate(prompts, go);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(a[i].tokens, b[i].tokens);
  EXPECT_EQ(with.stats().graph_replays, 0);
}

TEST(ContextCopy, CpuCopyAndZero) {
  Context ctx = Context::cpu(1);
  const OwnedTensor a = test::host_tensor({1, 2, 3, 4}, {4}), b(DType::F32, {4});
  ctx.copy(b, a);
  EXPECT_EQ(test::to_double(b), (std::vector<double>{1, 2, 3, 4}));
  ctx.zero(b);
  EXPECT_EQ(test::to_double(b), (std::vector<double>{0, 0, 0, 0}));
  const OwnedTensor c(DType::F32, {3});
  EXPECT_THROW(ctx.copy(c, a), Error);  // sizes differ: a named error
}

TEST(CudaGraphCpu, CaptureOnACpuContextIsAnError) {
  Context ctx = Context::cpu(1);
  CudaGraph g;
  EXPECT_FALSE(g.ready());
  EXPECT_THROW(g.capture(ctx, [] {}), Error);
  EXPECT_THROW(g.replay(ctx), Error);
}

}  // namespace
}  // namespace beaver::model
