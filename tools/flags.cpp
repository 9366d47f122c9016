#include "tools/flags.h"

#include <algorithm>
#include <cstddef>

#include "csrc/log.h"

namespace beaver::tools {
namespace {

// Underscores and dashes are one character for flag matching.
std::string canonical(std::string name) {
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// The long option of app (or of an app above it) whose name matches `name` up to the
// underscore/dash spelling, or nullptr.
CLI::Option* find_long(CLI::App* app, const std::string& name, std::string* registered) {
  const std::string want = canonical(name);
  for (CLI::App* a = app; a != nullptr; a = a->get_parent()) {
    for (CLI::Option* opt : a->get_options()) {
      for (const std::string& lname : opt->get_lnames()) {
        if (canonical(lname) == want) {
          *registered = lname;
          return opt;
        }
      }
    }
  }
  return nullptr;
}

std::string closest_long(CLI::App* app, const std::string& name) {
  std::string best;
  std::size_t best_distance = 0;
  for (CLI::Option* opt : app->get_options()) {
    for (const std::string& lname : opt->get_lnames()) {
      const std::string want = canonical(name), have = canonical(lname);
      // A flag that the typed name begins (or that begins it) is the likeliest meaning.
      const bool prefix = have.rfind(want, 0) == 0 || want.rfind(have, 0) == 0;
      const std::size_t d = prefix ? 1 : edit_distance(want, have);
      if (best.empty() || d < best_distance) {
        best = lname;
        best_distance = d;
      }
    }
  }
  // Only a plausible neighbour is worth suggesting.
  if (best.empty() || best_distance > std::max<std::size_t>(3, name.size() / 3)) return {};
  return best;
}

std::string command_path(CLI::App* app) {
  std::string path;
  for (CLI::App* a = app; a != nullptr && a->get_parent() != nullptr; a = a->get_parent()) {
    path = path.empty() ? a->get_name() : a->get_name() + " " + path;
  }
  return path;
}

}  // namespace

FlagNormalization normalize_flags(CLI::App& app, const std::vector<std::string>& args) {
  FlagNormalization out;
  out.args.reserve(args.size());
  CLI::App* current = &app;
  bool skip_value = false;  // the previous token was a flag whose value follows as its own token
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& token = args[i];
    if (token == "--") {  // everything after it is positional
      out.args.insert(out.args.end(), args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
      break;
    }
    const bool is_long = token.size() > 2 && token.rfind("--", 0) == 0;
    if (skip_value && !is_long) {
      skip_value = false;
      out.args.push_back(token);
      continue;
    }
    skip_value = false;
    if (is_long) {
      const std::size_t eq = token.find('=');
      const std::string name = token.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
      std::string registered;
      CLI::Option* opt = find_long(current, name, &registered);
      if (opt == nullptr) {
        const std::string where = command_path(current);
        std::string message = "unknown flag --" + name;
        if (!where.empty()) message += " for `beaver " + where + "`";
        const std::string suggestion = closest_long(current, name);
        message += suggestion.empty() ? "; see --help for the flags it takes"
                                      : "; did you mean --" + suggestion + "?";
        out.error = message;
        return out;
      }
      out.args.push_back("--" + registered +
                         (eq == std::string::npos ? std::string() : token.substr(eq)));
      skip_value = eq == std::string::npos && opt->get_type_size_max() > 0;
      continue;
    }
    if (token.size() > 1 && token[0] == '-') {  // short flag: CLI11 handles it as it is
      out.args.push_back(token);
      continue;
    }
    for (CLI::App* sub : current->get_subcommands([](CLI::App*) { return true; })) {
      if (sub->check_name(token)) {
        current = sub;
        break;
      }
    }
    out.args.push_back(token);
  }
  return out;
}

void add_log_level_flag(CLI::App& app) {
  app.add_option_function<std::string>(
         "--log_level",
         [](const std::string& v) { set_log_threshold(parse_log_level(v).value_or(LogLevel::Info)); },
         "Log threshold: debug (adds memory-plan breakdowns), info, warn or error (default: info, "
         "or $BEAVER_LOG)")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  for (CLI::App* sub : app.get_subcommands({})) add_log_level_flag(*sub);
}

}  // namespace beaver::tools
