#pragma once
#include <sched.h>

// The calling thread yields every CPU to the program's threads (SCHED_IDLE): see saver.cc.
inline void SetBackgroundPriority() {
  sched_param none{};
  sched_setscheduler(0, SCHED_IDLE, &none);
}
