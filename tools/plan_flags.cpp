// --dry_run and --device_memory (plan_flags.h).
#include "tools/plan_flags.h"

#include <cstdio>

namespace beaver::tools {

void PlanFlags::add(CLI::App& cmd, bool with_dry_run) {
  if (with_dry_run)
    cmd.add_flag("--dry_run", dry_run,
                 "Print the memory plan of this run (per rank, per role, per item) and stop "
                 "before loading anything");
  cmd.add_option("--device_memory", device_memory,
                 "Memory per device the plan is held against, e.g. 80GB, 141GiB (default: the "
                 "detected size; the host's memory on the CPU)");
}

bool PlanFlags::check(train::PlanSetup setup, const std::string& batch_flag,
                      const std::string& recompute_flag, bool root) const {
  if (!device_memory.empty()) setup.device_memory = train::parse_bytes(device_memory);
  const train::MemoryPlan plan = train::plan_memory(setup);
  if (dry_run) {
    if (root) {
      std::fputs(plan.table().c_str(), stdout);
      // Stage 3 with a rollout engine: the other --zero3_generation, for comparison.
      bool engine = false, copy = false;
      for (const auto& r : setup.roles) {
        engine = engine || (r.engine_batch > 0 && r.sharded_model);
        copy = copy || r.generation_copy;
      }
      if (engine && setup.zero_stage == 3 && setup.ranks > 1) {
        train::PlanSetup other = setup;
        for (auto& r : other.roles) r.generation_copy = r.engine_batch > 0 && !copy;
        const train::MemoryPlan alt = train::plan_memory(other);
        std::printf("  with --zero3_generation %s: total %s (%s)\n", copy ? "sharded" : "gathered",
                    train::format_plan_bytes(alt.total).c_str(),
                    alt.fits() ? "fits" : "does NOT fit");
      }
    }
    return true;
  }
  std::vector<train::PlanVariant> variants;
  bool all_recompute = true;
  for (const auto& r : setup.roles)
    if (r.options.training && !r.options.recompute) all_recompute = false;
  if (!all_recompute && !recompute_flag.empty()) {
    train::PlanSetup v = setup;
    for (auto& r : v.roles) r.options.recompute = r.options.training;
    variants.push_back({recompute_flag, v});
  }
  for (auto& v : train::standard_variants(setup, batch_flag)) variants.push_back(std::move(v));
  train::require_fits(plan, variants);
  return false;
}

}  // namespace beaver::tools
