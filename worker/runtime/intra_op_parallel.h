// at::parallel_for for the runtime's own kernels. ATen's header defines its OpenMP path only under
// _OPENMP: in a file compiled without -fopenmp every range silently runs on the calling thread
// (the vocabulary screen and NF4 dequantization did, until measured). A file that splits work
// includes this header instead of <ATen/Parallel.h> and is listed in SCHISM_OPENMP_SOURCES
// (worker/runtime/CMakeLists.txt); if it is not, it does not compile.
#ifndef SCHISM_WORKER_RUNTIME_INTRA_OP_PARALLEL_H_
#define SCHISM_WORKER_RUNTIME_INTRA_OP_PARALLEL_H_

#include <ATen/Parallel.h>

#ifndef _OPENMP
#error "at::parallel_for runs serially without -fopenmp: add this file to SCHISM_OPENMP_SOURCES"
#endif

#endif  // SCHISM_WORKER_RUNTIME_INTRA_OP_PARALLEL_H_
