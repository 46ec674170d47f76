// The 16 NF4 code values (bitsandbytes' NF4 table), in code order, as a list both the C++ path
// (nf4.cc) and the CUDA kernels (cuda/nf4_kernels.cu, a __constant__ array) initialize from.
#ifndef SCHISM_WORKER_RUNTIME_NF4_CODEBOOK_H_
#define SCHISM_WORKER_RUNTIME_NF4_CODEBOOK_H_

// clang-format off
#define SCHISM_NF4_CODEBOOK                                                                \
  -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,                \
  -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,               \
  0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f, \
  0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f
// clang-format on

#endif  // SCHISM_WORKER_RUNTIME_NF4_CODEBOOK_H_
