// Thread counts of every parallel region, and fork safety.
#pragma once

namespace mixscore {

// The OpenMP threads for one region: `requested` (> 0) or OpenMP's default (0), and 1 in a
// child process created by fork() (multiprocessing's default on Linux, DataLoader workers):
// libgomp's thread pool does not survive fork, and a region with more threads would wait
// forever for threads that no longer exist. Results do not depend on the thread count.
int thread_count(int requested);

}  // namespace mixscore
