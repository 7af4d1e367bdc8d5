// Shared by the pybind11 binding files: run a computation with the GIL released while polling
// for Ctrl-C.
#pragma once
#include <pybind11/pybind11.h>

#include <chrono>

#include "mixscore/engine.hpp"  // StopFn

namespace mixscore {

// Run with the GIL released; Ctrl-C is noticed within ~50 ms and raised as KeyboardInterrupt.
// body(poll) returns false when poll() asked it to stop.
template <typename F>
void run_interruptible(F&& body) {
  namespace py = pybind11;
  auto last = std::chrono::steady_clock::now();
  StopFn poll = [&last]() {
    auto now = std::chrono::steady_clock::now();
    if (now - last < std::chrono::milliseconds(50)) return false;
    last = now;
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
  };
  bool finished;
  {
    py::gil_scoped_release release;
    finished = body(poll);
  }
  if (!finished) {
    if (PyErr_Occurred()) throw py::error_already_set();
    PyErr_SetNone(PyExc_KeyboardInterrupt);
    throw py::error_already_set();
  }
}

}  // namespace mixscore
