// Which of the instruction-set variants (generic, avx2, avx512) this CPU runs. Compiled only in
// generic translation units (never inside a variant built with wider instructions).
#pragma once
#include <cstring>

namespace mixscore {

inline const char* const kIsaNames[3] = {"generic", "avx2", "avx512"};

// The position in kIsaNames of the best variant this CPU supports.
inline int best_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    return 2;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("bmi2"))
    return 1;
  return 0;
}

// The position of `name` ("auto": the best supported), or -1 if unknown or not supported.
inline int isa_by_name(const char* name) {
  const int best = best_isa();
  if (!std::strcmp(name, "auto")) return best;
  for (int i = 0; i < 3; ++i)
    if (!std::strcmp(name, kIsaNames[i])) return i <= best ? i : -1;
  return -1;
}

}  // namespace mixscore
