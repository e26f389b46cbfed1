// The fused anti-aliased activation: 2x upsample -> Snake/SnakeBeta -> 2x downsample, one pass.
//
// Definition (docs/definition.md), for one row x[0..T) of a (batch, channels, T) tensor, 12 taps f_up, f_down:
//   u[n] = 2 * sum_{k = (n+15) mod 2, k < 12} f_up[k] * x[clamp((n+15-k)/2 - 5, 0, T-1)],  n in [0, 2T)
//   z[n] = u[n] + sin(a*u[n])^2 / (b + 1e-9)
//   y[t] = sum_{k < 12} f_down[k] * z[clamp(2t + k - 5, 0, 2T-1)],                           t in [0, T)
//
// Written per parity, with ze[m] = z[2m] and zo[m] = z[2m+1]:
//   u[2m]   = sum_{i<6} 2 f_up[11-2i] * x[m-3+i]       (x indices clamped to [0, T-1])
//   u[2m+1] = sum_{i<6} 2 f_up[10-2i] * x[m-2+i]
//   y[t]    = sum_{i<6} f_down[2i] * zo[t-3+i] + f_down[2i+1] * ze[t-2+i]
// where z at a position outside [0, 2T) is the z of the nearest end: ze[m] = zo[m] = z[0] for m < 0,
// and ze[m] = zo[m] = z[2T-1] for m >= T. So y[t] reads x[t-5 .. t+5] only.
//
// One block computes kTile consecutive outputs of one row:
//   1. stage x[t0-6 .. t0+kTile+6) (clamped) in shared memory as float, 16-byte vector loads where
//      the row allows them;
//   2. each thread computes ze, zo for kOutputsPerThread consecutive m (a sliding window over x in
//      registers: 1 shared load per m), into shared memory;
//   3. where the tile's window reaches past a sequence end, overwrite the z outside [0, 2T) with
//      z[0] or z[2T-1];
//   4. each thread computes kOutputsPerThread consecutive y (sliding windows over ze, zo) into
//      shared memory, reusing the x buffer;
//   5. store the y tile, rounded once to y's type (x's, or bfloat16 / float16 from float32 x), with
//      16-byte vector stores where the row allows them.
// Every z is computed once per block (plus 6 halo values). The sine is the shared fast sine
// (docs/fast_sine.md): a mod-pi reduction and the hardware sine, 7 FP32 operations and 1 MUFU; z is
// carried scaled by a (see snake_scaled). benchmarks/cuda_sass.py counts the SASS: 39.9 FP32-pipe
// operations and 2 MUFU per output on the common path for sm_90 (upsample 12, downsample 12).
//
// The H200 run (MEASURED.md) timed the kernel before the fast sine; nothing since has been timed.

#include "anti_alias_activation.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

namespace bigvgan_fast {
namespace {

constexpr int kTaps = 12;
constexpr int kThreads = 256;
// Odd, so that thread i's chunk starting at i * kOutputsPerThread (words) puts the 32 threads of a
// warp in 32 different shared-memory banks in steps 2 and 4. 9 gives a 2304-sample tile: 27.1 KB
// of shared memory per block, and 18 inlined fast sines per thread in step 2 (~2,000 SASS
// instructions per kernel for sm_90, CUDA 13.0).
constexpr int kOutputsPerThread = 9;
constexpr int kTile = kThreads * kOutputsPerThread;
// 4 blocks of 256 threads per SM caps ptxas at 64 registers: without the cap it schedules the 18
// unrolled sines of a chunk side by side and takes 126 (2 blocks per SM); 64 fit with no spill.
constexpr int kMinBlocksPerSm = 4;
// y[t0 .. t0+kTile) needs m in [t0-3, t0+kTile+3), i.e. x in [t0-6, t0+kTile+6).
constexpr int kHalo = 6;
constexpr int kZCount = kTile + 2 * 3;
// xs[kXOffset + i] holds x[t0 + i]: kXOffset is a multiple of 4 floats so that the staged tile and
// the y tile that later reuses the buffer are 16-byte aligned.
constexpr int kXOffset = 8;
constexpr int kXSize = kXOffset + kTile + kHalo + 2;
constexpr int kZSize = kZCount + 2;
constexpr float kSnakeEps = 1e-9f;

static_assert(kOutputsPerThread % 2 == 1, "an odd per-thread stride keeps shared memory free of bank conflicts");
static_assert(kTile % 8 == 0, "tile starts must be 16-byte aligned for 2-byte elements");
static_assert(kXOffset % 4 == 0 && kXOffset >= kHalo, "the staged tile must be 16-byte aligned");
// The largest shared index step 2 reads: the last chunk's window, and the 6 halo m values.
static_assert((kThreads - 1) * kOutputsPerThread + 2 + kOutputsPerThread + 6 <= kXSize, "xs too small");
static_assert(kTile + 5 + 8 < kXSize, "xs too small for the halo m values");
static_assert(kZCount <= kZSize, "z buffers too small");

struct KernelParams {
  const void* x;
  void* y;
  const void* alpha;  // param_dtype elements, read once per block (see load_parameter)
  const void* beta;   // nullptr: Snake
  IoDtype param_dtype;
  const float* upsample_filter;
  const float* downsample_filter;
  int64_t channels;
  int64_t time_steps;
  int64_t tiles_per_row;
  int64_t total_tiles;
  bool alpha_logscale;
};

// The per-channel constants of one tile: upsample taps 2 * sigma * f_up, downsample taps f_down / sigma,
// and sigma * inv_b, with sigma = a (z is carried scaled by a: see snake_scaled). For |a| < 2^-64,
// sigma = 1 and the sine term is dropped: inv_b * sin(a*u)^2 <= inv_b * 2^-128 * u^2 is then below
// float32 resolution of u for any |u| < 2^64 / inv_b. NaN and infinite a keep sigma = a, so they
// reach every output as NaN, as in a float32 evaluation of the definition.
struct ChannelConstants {
  float up[kTaps];
  float down[kTaps];
  float scaled_inv_b;
  float up_abs_sum;  // max over the two phases of sum |up[k]|: |v| <= up_abs_sum * max |x|
  float sine_limit;  // |v| from which the precise sine is taken: kFastSineMax, or 0 for small b
};

template <typename To, typename From>
__device__ __forceinline__ To bit_cast(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs equal sizes");
  To to;
  memcpy(&to, &from, sizeof(To));
  return to;
}

// Loads, stores and 16-byte (un)packing per I/O type; values are float32 in between.
template <typename T>
struct Io;

template <>
struct Io<float> {
  static constexpr int kVec = 4;
  static __device__ __forceinline__ float load(const float* p) { return __ldg(p); }
  static __device__ __forceinline__ void store(float* p, float v) { *p = v; }
  static __device__ __forceinline__ void unpack(const uint4& raw, float (&v)[kVec]) {
    v[0] = __uint_as_float(raw.x);
    v[1] = __uint_as_float(raw.y);
    v[2] = __uint_as_float(raw.z);
    v[3] = __uint_as_float(raw.w);
  }
  static __device__ __forceinline__ uint4 pack(const float (&v)[kVec]) {
    return make_uint4(__float_as_uint(v[0]), __float_as_uint(v[1]), __float_as_uint(v[2]), __float_as_uint(v[3]));
  }
};

template <>
struct Io<__half> {
  static constexpr int kVec = 8;
  static __device__ __forceinline__ float load(const __half* p) { return __half2float(__ldg(p)); }
  static __device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
  static __device__ __forceinline__ void unpack(const uint4& raw, float (&v)[kVec]) {
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 pair = __half22float2(bit_cast<__half2>(words[i]));
      v[2 * i] = pair.x;
      v[2 * i + 1] = pair.y;
    }
  }
  static __device__ __forceinline__ uint4 pack(const float (&v)[kVec]) {
    uint32_t words[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) words[i] = bit_cast<uint32_t>(__floats2half2_rn(v[2 * i], v[2 * i + 1]));
    return make_uint4(words[0], words[1], words[2], words[3]);
  }
};

template <>
struct Io<__nv_bfloat16> {
  static constexpr int kVec = 8;
  static __device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(__ldg(p)); }
  static __device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
  static __device__ __forceinline__ void unpack(const uint4& raw, float (&v)[kVec]) {
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 pair = __bfloat1622float2(bit_cast<__nv_bfloat162>(words[i]));
      v[2 * i] = pair.x;
      v[2 * i + 1] = pair.y;
    }
  }
  static __device__ __forceinline__ uint4 pack(const float (&v)[kVec]) {
    uint32_t words[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) words[i] = bit_cast<uint32_t>(__floats2bfloat162_rn(v[2 * i], v[2 * i + 1]));
    return make_uint4(words[0], words[1], words[2], words[3]);
  }
};

__device__ __forceinline__ int64_t clamp_index(int64_t i, int64_t size) {
  return i < 0 ? 0 : (i >= size ? size - 1 : i);
}

__device__ __forceinline__ bool is_16_byte_aligned(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// The shared fast sine (docs/fast_sine.md; the same constants are in bigvgan_fast/fast_sine.py, and
// tests/test_fast_sine.py checks that they agree). sin(v)^2 depends on v only modulo pi, so v is
// reduced modulo pi, r = v - k*pi with |r| <= pi/2 + 0.003, and r goes to the hardware sine
// (__sinf = MUFU.SIN, max error 2^-21.41 on [-pi, pi]). |s*s - sin(v)^2| <= 1.1e-6 for |v| < kFastSineMax.
constexpr float kInvPi = 0.31830987334251404f;  // float32(1/pi)
// 1.5 * 2^23: fma(v, kInvPi, kRoundMagic) - kRoundMagic is v/pi rounded to an integer (|v/pi| < 2^22),
// on the FP32 pipe.
constexpr float kRoundMagic = 12582912.0f;
// Cody-Waite: kPiA has 8 significant bits, so k * kPiA is exact for |k| < 2^16 and v - k * kPiA is
// exact (Sterbenz); the one rounding is in the kPiB step. |pi - kPiA - kPiB| = 5.1e-12.
constexpr float kPiA = 3.140625f;
constexpr float kPiB = 0.0009676535846665502f;  // float32(pi - kPiA)
// |v| < 2^16 keeps |k| <= 20861: the dropped third constant then costs at most 1.1e-7.
constexpr float kFastSineMax = 65536.0f;
// The fast sine's error reaches y multiplied by 1 / b: a channel with 1 / (b + eps) beyond this takes
// the precise sine for every argument, so that the sine's share of an output's error stays <= 1.25 *
// 1.33 * 1.1e-6 = 1.8e-6 (the definition's half-precision allowance near zero is 4e-6). Per block
// (one channel), so a uniform branch; the same rule as the Triton kernels' MAX_FAST_INV_B.
constexpr float kMaxFastInvB = 1.25f;

// sin(v)^2 on the fast path. Non-finite v give NaN here too (inf * kInvPi - inf), as the precise
// sine does.
__device__ __forceinline__ float fast_sine_squared(float v) {
  const float k = fmaf(v, kInvPi, kRoundMagic) - kRoundMagic;
  float r = fmaf(-k, kPiA, v);
  r = fmaf(-k, kPiB, r);
  const float s = __sinf(r);
  return s * s;
}

// z' = a * z = v + a * inv_b * sin(v)^2 with v = a * u: the kernel carries z scaled by a (the
// upsample taps hold 2 * a * f_up, the downsample taps f_down / a), which saves the multiply a * u
// per sine. scaled_inv_b = a * inv_b.
__device__ __forceinline__ float snake_scaled(float v, float scaled_inv_b) {
  return fmaf(scaled_inv_b, fast_sine_squared(v), v);
}

// |v| >= kFastSineMax, or any v in a channel of small b (ChannelConstants::sine_limit): the precise
// sine, as a float32 evaluation of the definition would use. Out of line and behind one test per
// thread chunk (see upsample_activate): an inlined sinf per site would cost ~40 instructions and a
// Payne-Hanek reduction each.
__device__ __noinline__ float precise_snake_scaled(float v, float scaled_inv_b) {
  const float s = sinf(v);
  return fmaf(scaled_inv_b, s * s, v);
}

// u[2m] and u[2m+1] from w[i] = x[m-3+i], i < 7 (clamped); `up` holds 2 * f_up (exact scaling).
__device__ __forceinline__ void upsample_pair(const float (&up)[kTaps], const float (&w)[7], float& u_even,
                                              float& u_odd) {
  u_even = 0.0f;
  u_odd = 0.0f;
#pragma unroll
  for (int i = 0; i < 6; ++i) {
    u_even = fmaf(up[11 - 2 * i], w[i], u_even);
    u_odd = fmaf(up[10 - 2 * i], w[i + 1], u_odd);
  }
}

// Step 1: xs[kXOffset + i] = x[clamp(t0 + i)] for i in [-kHalo, kTile + kHalo).
template <typename T>
__device__ __forceinline__ void stage_input(const T* __restrict__ x_row, int64_t t0, int n_out, int64_t time_steps,
                                            float* __restrict__ xs, int tid) {
  constexpr int kVec = Io<T>::kVec;
  constexpr int kVecPerThread = (kTile / kVec + kThreads - 1) / kThreads;

  // The 2 * kHalo halo samples, issued first so that their latency overlaps the tile's.
  float halo = 0.0f;
  int halo_slot = 0;
  if (tid < 2 * kHalo) {
    const int i = tid < kHalo ? tid - kHalo : kTile + (tid - kHalo);
    halo_slot = kXOffset + i;
    halo = Io<T>::load(x_row + clamp_index(t0 + i, time_steps));
  }

  // x_row + t0 is 16-byte aligned exactly when x_row is (t0 * sizeof(T) is a multiple of 16).
  int scalar_from = 0;
  if (is_16_byte_aligned(x_row)) {
    const int n_vec = n_out / kVec;
    const uint4* src = reinterpret_cast<const uint4*>(x_row + t0);
    uint4 raw[kVecPerThread];
#pragma unroll
    for (int k = 0; k < kVecPerThread; ++k) {
      const int v = tid + k * kThreads;
      if (v < n_vec) raw[k] = __ldg(src + v);
    }
#pragma unroll
    for (int k = 0; k < kVecPerThread; ++k) {
      const int v = tid + k * kThreads;
      if (v < n_vec) {
        float vals[kVec];
        Io<T>::unpack(raw[k], vals);
        float4* dst = reinterpret_cast<float4*>(xs + kXOffset + v * kVec);
#pragma unroll
        for (int q = 0; q < kVec / 4; ++q) {
          dst[q] = make_float4(vals[4 * q], vals[4 * q + 1], vals[4 * q + 2], vals[4 * q + 3]);
        }
      }
    }
    scalar_from = n_vec * kVec;
  }
  // Unaligned rows, the last partial vector, and (last tile) the replicated x[T-1] past the end.
  for (int i = scalar_from + tid; i < kTile; i += kThreads) {
    xs[kXOffset + i] = Io<T>::load(x_row + clamp_index(t0 + i, time_steps));
  }
  if (tid < 2 * kHalo) xs[halo_slot] = halo;
}

// Recomputes, with the precise sine, the z of m = m_begin .. m_begin + count - 1 whose |v| reaches
// `limit` (kFastSineMax, or 0: every m of a small-b channel). A rolled loop reading x from shared
// memory: it only runs where the chunk's bound says some |v| may be that large, or for small b.
__device__ __noinline__ void redo_large_arguments(const float* __restrict__ up, float scaled_inv_b, float limit,
                                                  int m_begin, int count, const float* __restrict__ xs,
                                                  float* __restrict__ z_even, float* __restrict__ z_odd) {
  float taps[kTaps];
  for (int k = 0; k < kTaps; ++k) taps[k] = up[k];
  for (int j = 0; j < count; ++j) {
    const int m = m_begin + j;
    float u_even = 0.0f;
    float u_odd = 0.0f;
    for (int i = 0; i < 6; ++i) {
      u_even = fmaf(taps[11 - 2 * i], xs[m + 2 + i], u_even);
      u_odd = fmaf(taps[10 - 2 * i], xs[m + 3 + i], u_odd);
    }
    if (!(fabsf(u_even) < limit)) z_even[m] = precise_snake_scaled(u_even, scaled_inv_b);
    if (!(fabsf(u_odd) < limit)) z_odd[m] = precise_snake_scaled(u_odd, scaled_inv_b);
  }
}

// Step 2: ze/zo[j] for m = t0 - 3 + j, j < min(n_out + 6, kZCount). Chunks past that are skipped.
// The range test of the fast sine is made once per chunk, on a bound: |v| <= up_abs_sum * max|x|
// over the chunk's window (up_abs_sum: the larger of the two polyphase sums of |2 a f_up|). That is
// one FMNMX per x instead of a compare and a branch per sine; NaN x (ignored by fmaxf) need no slow
// path, since the fast sine gives NaN for them. A |v| just above the limit that float32 rounding of
// the bound misses stays on the fast path, whose reduction is exact up to |v| < 2^16 * PI_A.
__device__ __forceinline__ void upsample_activate(const ChannelConstants& constants, int n_out,
                                                  const float* __restrict__ xs, float* __restrict__ z_even,
                                                  float* __restrict__ z_odd, int tid) {
  float up[kTaps];
#pragma unroll
  for (int k = 0; k < kTaps; ++k) up[k] = constants.up[k];
  const float scaled_inv_b = constants.scaled_inv_b;
  const int m_needed = n_out + 6;
  // x[m-3] of m = t0 - 3 + j sits at xs[j + 2].
  const int m_begin = tid * kOutputsPerThread;
  if (m_begin < m_needed) {
    float w[kOutputsPerThread + 6];
    float x_max = 0.0f;
#pragma unroll
    for (int i = 0; i < kOutputsPerThread + 6; ++i) {
      w[i] = xs[m_begin + 2 + i];
      x_max = fmaxf(x_max, fabsf(w[i]));
    }
#pragma unroll
    for (int j = 0; j < kOutputsPerThread; ++j) {
      float window[7];  // unrolled, so these are register renames
#pragma unroll
      for (int i = 0; i < 7; ++i) window[i] = w[j + i];
      float u_even, u_odd;
      upsample_pair(up, window, u_even, u_odd);
      z_even[m_begin + j] = snake_scaled(u_even, scaled_inv_b);
      z_odd[m_begin + j] = snake_scaled(u_odd, scaled_inv_b);
    }
    if (x_max * constants.up_abs_sum >= constants.sine_limit) {
      redo_large_arguments(constants.up, scaled_inv_b, constants.sine_limit, m_begin, kOutputsPerThread, xs, z_even,
                           z_odd);
    }
  }
  // The 6 m values past the per-thread chunks (kTile .. kTile + 5).
  if (tid < kZCount - kTile) {
    const int m = kTile + tid;
    if (m < m_needed) {
      float window[7];
#pragma unroll
      for (int i = 0; i < 7; ++i) window[i] = xs[m + 2 + i];
      float u_even, u_odd;
      upsample_pair(up, window, u_even, u_odd);
      z_even[m] = snake_scaled(u_even, scaled_inv_b);
      z_odd[m] = snake_scaled(u_odd, scaled_inv_b);
      if (!(fmaxf(fabsf(u_even), fabsf(u_odd)) < constants.sine_limit)) {
        redo_large_arguments(constants.up, scaled_inv_b, constants.sine_limit, m, 1, xs, z_even, z_odd);
      }
    }
  }
}

// Step 3: z outside [0, 2T) is the z of the nearest end (z is replicate-padded, not recomputed from
// replicate-padded x). j = 0..2 are m = -3..-1 when t0 == 0. At the other end, m >= T sits at
// j >= remaining + 3 (remaining = T - t0), which falls inside this tile's window [0, n_out + 6) in
// the row's last tile and also when the next tile would hold fewer than 3 outputs.
__device__ __forceinline__ void clamp_z_at_borders(bool at_start, bool near_end, int remaining, int n_out,
                                                   float* __restrict__ z_even, float* __restrict__ z_odd, int tid) {
  if (at_start && tid < 3) {
    const float first = z_even[3];  // z[0]
    z_even[tid] = first;
    z_odd[tid] = first;
  }
  if (near_end && tid >= 32 && tid < 35) {
    const int j = remaining + 3 + (tid - 32);
    if (j < n_out + 6) {
      const float last = z_odd[remaining + 2];  // z[2T-1]
      z_even[j] = last;
      z_odd[j] = last;
    }
  }
}

// Step 4: ys[t] = y[t0 + t] for this thread's chunk.
__device__ __forceinline__ void downsample(const float (&down)[kTaps], int n_out, const float* __restrict__ z_even,
                                           const float* __restrict__ z_odd, float* __restrict__ ys, int tid) {
  const int t_begin = tid * kOutputsPerThread;
  if (t_begin >= n_out) return;
  // y[t0 + t] reads zo[j], j = t .. t+5 and ze[j], j = t+1 .. t+6 (j = m - t0 + 3).
  float zo[kOutputsPerThread + 5];
  float ze[kOutputsPerThread + 5];
#pragma unroll
  for (int i = 0; i < kOutputsPerThread + 5; ++i) {
    zo[i] = z_odd[t_begin + i];
    ze[i] = z_even[t_begin + 1 + i];
  }
#pragma unroll
  for (int j = 0; j < kOutputsPerThread; ++j) {
    float acc = 0.0f;
#pragma unroll
    for (int i = 0; i < 6; ++i) {
      acc = fmaf(down[2 * i], zo[j + i], acc);
      acc = fmaf(down[2 * i + 1], ze[j + i], acc);
    }
    ys[t_begin + j] = acc;
  }
}

// Step 5.
template <typename T>
__device__ __forceinline__ void store_output(T* __restrict__ y_row, int64_t t0, int n_out, const float* __restrict__ ys,
                                             int tid) {
  constexpr int kVec = Io<T>::kVec;
  int scalar_from = 0;
  if (is_16_byte_aligned(y_row)) {
    const int n_vec = n_out / kVec;
    uint4* dst = reinterpret_cast<uint4*>(y_row + t0);
    for (int v = tid; v < n_vec; v += kThreads) {
      const float4* src = reinterpret_cast<const float4*>(ys + v * kVec);
      float vals[kVec];
#pragma unroll
      for (int q = 0; q < kVec / 4; ++q) {
        const float4 f = src[q];
        vals[4 * q] = f.x;
        vals[4 * q + 1] = f.y;
        vals[4 * q + 2] = f.z;
        vals[4 * q + 3] = f.w;
      }
      dst[v] = Io<T>::pack(vals);
    }
    scalar_from = n_vec * kVec;
  }
  for (int i = scalar_from + tid; i < n_out; i += kThreads) Io<T>::store(y_row + t0 + i, ys[i]);
}

// alpha or beta of one channel, in float32. The parameters are read in their own dtype (a model
// cast to half precision holds them so) rather than converted on the host, which cost two more
// kernels per call; a branch once per block, not per sample.
__device__ __forceinline__ float load_parameter(const void* param, int64_t channel, IoDtype dtype) {
  switch (dtype) {
    case IoDtype::kFloat16:
      return __half2float(__ldg(static_cast<const __half*>(param) + channel));
    case IoDtype::kBFloat16:
      return __bfloat162float(__ldg(static_cast<const __nv_bfloat16*>(param) + channel));
    default:
      return __ldg(static_cast<const float*>(param) + channel);
  }
}

// Written by the first 2 * kTaps + 2 threads of the block (one value each), read by all after the
// next __syncthreads: the exp, the division and the 24 products run once per block, not per thread.
__device__ __forceinline__ void write_channel_constants(const KernelParams& p, int64_t channel,
                                                       ChannelConstants& out, int tid) {
  if (tid > 2 * kTaps + 1) return;
  float a = load_parameter(p.alpha, channel, p.param_dtype);
  float b = p.beta != nullptr ? load_parameter(p.beta, channel, p.param_dtype) : a;
  if (p.alpha_logscale) {
    a = expf(a);
    b = expf(b);
  }
  const bool scale_by_a = !(fabsf(a) < 0x1p-64f);
  const float sigma = scale_by_a ? a : 1.0f;
  if (tid < kTaps) {
    out.up[tid] = (2.0f * sigma) * __ldg(p.upsample_filter + tid);
  } else if (tid < 2 * kTaps) {
    out.down[tid - kTaps] = __ldg(p.downsample_filter + tid - kTaps) / sigma;
  } else if (tid == 2 * kTaps) {
    const float inv_b = 1.0f / (b + kSnakeEps);
    out.scaled_inv_b = scale_by_a ? a * inv_b : 0.0f;
    out.sine_limit = fabsf(inv_b) > kMaxFastInvB ? 0.0f : kFastSineMax;  // NaN inv_b: the fast path, NaN anyway
  } else {
    float even = 0.0f;
    float odd = 0.0f;
    for (int k = 0; k < kTaps; k += 2) {
      even += fabsf(__ldg(p.upsample_filter + k));
      odd += fabsf(__ldg(p.upsample_filter + k + 1));
    }
    out.up_abs_sum = fabsf(2.0f * sigma) * fmaxf(even, odd);
  }
}

// In: x's element type; Out: y's. The math is float32 between the two, so writing another type than
// x's (the mixed half-precision mode's float32 residual read into a bfloat16 / float16 convolution)
// rounds once, at the store, and saves the separate cast's full pass over y.
template <typename In, typename Out>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm) anti_alias_activation_kernel(const KernelParams p) {
  __shared__ __align__(16) float xs[kXSize];  // the x tile, then the y tile (from xs + kXOffset)
  __shared__ float z_even[kZSize];            // a * z[2m],   m = t0 - 3 + j
  __shared__ float z_odd[kZSize];             // a * z[2m+1], m = t0 - 3 + j
  __shared__ __align__(16) ChannelConstants constants;

  const int tid = static_cast<int>(threadIdx.x);
  const In* __restrict__ x = static_cast<const In*>(p.x);
  Out* __restrict__ y = static_cast<Out*>(p.y);
  const int64_t time_steps = p.time_steps;

  // One tile per block in practice (the grid covers all tiles up to 2^31 - 1 of them).
  for (int64_t tile = blockIdx.x; tile < p.total_tiles; tile += gridDim.x) {
    const int64_t row = tile / p.tiles_per_row;
    const int64_t t0 = (tile - row * p.tiles_per_row) * kTile;
    const int n_out = static_cast<int>(time_steps - t0 < kTile ? time_steps - t0 : kTile);
    const In* x_row = x + row * time_steps;
    Out* y_row = y + row * time_steps;

    write_channel_constants(p, row % p.channels, constants, tid);
    stage_input<In>(x_row, t0, n_out, time_steps, xs, tid);
    __syncthreads();
    upsample_activate(constants, n_out, xs, z_even, z_odd, tid);
    __syncthreads();
    const bool at_start = t0 == 0;
    const int64_t remaining = time_steps - t0;  // >= n_out
    const bool near_end = remaining < n_out + 3;
    if (at_start || near_end) {  // uniform across the block
      clamp_z_at_borders(at_start, near_end, static_cast<int>(near_end ? remaining : 0), n_out, z_even, z_odd, tid);
      __syncthreads();
    }
    float down[kTaps];
#pragma unroll
    for (int k = 0; k < kTaps; ++k) down[k] = constants.down[k];
    downsample(down, n_out, z_even, z_odd, xs + kXOffset, tid);
    __syncthreads();
    store_output<Out>(y_row, t0, n_out, xs + kXOffset, tid);
    if (tile + gridDim.x < p.total_tiles) __syncthreads();  // xs and the constants are rewritten next
  }
}

template <typename In, typename Out = In>
void launch(const KernelParams& p, unsigned grid, cudaStream_t stream) {
  anti_alias_activation_kernel<In, Out><<<grid, kThreads, 0, stream>>>(p);
}

}  // namespace

cudaError_t launch_anti_alias_activation(const void* x, void* y, const void* alpha, const void* beta,
                                         IoDtype param_dtype, const float* upsample_filter,
                                         const float* downsample_filter, int64_t rows, int64_t channels,
                                         int64_t time_steps, bool alpha_logscale, IoDtype dtype,
                                         IoDtype out_dtype, cudaStream_t stream) {
  if (rows < 0 || time_steps < 1) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (channels < 1 || rows % channels != 0) return cudaErrorInvalidValue;
  if (x == nullptr || y == nullptr || alpha == nullptr || upsample_filter == nullptr ||
      downsample_filter == nullptr) {
    return cudaErrorInvalidValue;
  }
  KernelParams p;
  p.x = x;
  p.y = y;
  p.alpha = alpha;
  p.beta = beta;
  p.param_dtype = param_dtype;
  p.upsample_filter = upsample_filter;
  p.downsample_filter = downsample_filter;
  p.channels = channels;
  p.time_steps = time_steps;
  p.tiles_per_row = (time_steps + kTile - 1) / kTile;
  p.total_tiles = rows * p.tiles_per_row;
  p.alpha_logscale = alpha_logscale;
  const int64_t max_grid = 0x7fffffff;  // gridDim.x limit
  const unsigned grid = static_cast<unsigned>(p.total_tiles < max_grid ? p.total_tiles : max_grid);
  // Five instantiations, ~2,000 SASS instructions each: each type to itself, and float32 to bfloat16
  // or float16 (the mixed half-precision mode: a float32 residual stream read by half-precision
  // convolutions). No other pair has a user; check_out_dtype (anti_alias_activation_checks.h) says so.
  if (dtype == out_dtype) {
    switch (dtype) {
      case IoDtype::kFloat32:
        launch<float>(p, grid, stream);
        break;
      case IoDtype::kFloat16:
        launch<__half>(p, grid, stream);
        break;
      case IoDtype::kBFloat16:
        launch<__nv_bfloat16>(p, grid, stream);
        break;
      default:
        return cudaErrorInvalidValue;
    }
  } else if (dtype == IoDtype::kFloat32 && out_dtype == IoDtype::kBFloat16) {
    launch<float, __nv_bfloat16>(p, grid, stream);
  } else if (dtype == IoDtype::kFloat32 && out_dtype == IoDtype::kFloat16) {
    launch<float, __half>(p, grid, stream);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace bigvgan_fast
