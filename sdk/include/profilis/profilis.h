/* Profilis: the umbrella header. Include this one. */
#ifndef PROFILIS_H
#define PROFILIS_H

#include "profilis/common.h"
#include "profilis/trace.h"
#include "profilis/propagation.h"

#endif
