// exp, log, expm1, erfc, sigmoid and tanh on the family's vectors (std::exp is a libm call that GCC only
// vectorises under -ffast-math, which we never use). Every multiply-add is written as
// mul_add and the kernel sources are compiled with -ffp-contract=off, so that each FMA
// family evaluates the same operations in the same order and gives the same bits.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

#include "simd.hpp"

namespace mlpinfer::kernels::MLPINFER_FAMILY {

inline Vec from_bits(IntVec bits) {
  Vec v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

inline IntVec to_bits(Vec v) {
  IntVec bits;
  std::memcpy(&bits, &v, sizeof bits);
  return bits;
}

// Cephes' range reduction and degree-5 polynomial: relative error below 2e-7 over the
// whole range. Inputs below ln(FLT_MIN) give 0, above ln(FLT_MAX) +inf, NaN stays NaN;
// no floating-point exception is raised for any finite input.
constexpr float kExpMaxArg = 88.7228f;   // expf overflows above
constexpr float kExpMinArg = -87.3365f;  // below: result is subnormal, return 0

// e^x = p * 2^n for x in [kExpMinArg, kExpMaxArg]: returns p, sets n.
inline Vec exp_reduced(Vec x, IntVec& n_int) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2High = 0.693359375f;
  constexpr float kLn2Low = -2.12194440e-4f;
  // Round to nearest by adding and subtracting 1.5 * 2^23; valid while |n| < 2^22.
  constexpr float kRoundingShift = 12582912.0f;
  const Vec n = mul_add(x, splat(kLog2e), splat(kRoundingShift)) - kRoundingShift;
  const Vec r = mul_add(n, splat(-kLn2Low), mul_add(n, splat(-kLn2High), x));
  Vec p = splat(1.9875691500e-4f);
  p = mul_add(p, r, splat(1.3981999507e-3f));
  p = mul_add(p, r, splat(8.3334519073e-3f));
  p = mul_add(p, r, splat(4.1665795894e-2f));
  p = mul_add(p, r, splat(1.6666665459e-1f));
  p = mul_add(p, r, splat(5.0000001201e-1f));
  n_int = __builtin_convertvector(n, IntVec);
  return mul_add(p * r, r, r) + 1.0f;
}

inline Vec exp_vec(Vec x) {
  // Written so that NaN lands on kExpMinArg: converting NaN to int would be undefined.
  Vec clamped = x >= kExpMinArg ? x : splat(kExpMinArg);
  clamped = clamped > kExpMaxArg ? splat(kExpMaxArg) : clamped;
  IntVec n;
  const Vec p = exp_reduced(clamped, n);
  // 2^n built in the exponent bits; n is in [-126, 128] after the clamp, and
  // 2^128 is split in two factors so that it overflows to inf instead of wrapping.
  const IntVec half = n >> 1;
  Vec result = p * from_bits((half + 127) << 23) * from_bits((n - half + 127) << 23);
  result = x < kExpMinArg ? splat(0.0f) : result;
  result = x > kExpMaxArg ? splat(std::numeric_limits<float>::infinity()) : result;
  return x != x ? x : result;
}

// exp_vec for x <= 0 or NaN, all that sigmoid and tanh ask for: with n <= 0, 2^n is one
// factor and nothing overflows. The same values as exp_vec (a product by two powers of
// 2 that stay normal is the product by their product), in fewer instructions.
inline Vec exp_nonpositive(Vec x) {
  const Vec clamped = x >= kExpMinArg ? x : splat(kExpMinArg);
  IntVec n;
  const Vec result = exp_reduced(clamped, n) * from_bits((n + 127) << 23);
  return x >= kExpMinArg ? result : (x != x ? x : splat(0.0f));
}

inline Vec abs_vec(Vec x) { return from_bits(to_bits(x) & 0x7fffffff); }

// 1 / (1 + e^-x) evaluated as e^-|x| based so that the exponential never overflows.
inline Vec sigmoid_vec(Vec x) {
  const Vec e = exp_nonpositive(-abs_vec(x));
  const Vec positive = 1.0f / (1.0f + e);
  return x >= 0.0f ? positive : e * positive;  // NaN takes e * positive: NaN
}

// tanh: a Taylor polynomial where 1 - 2/(e^2x + 1) would cancel (|x| < 0.5; truncation
// error below 5e-9 there), the exponential form elsewhere.
inline Vec tanh_vec(Vec x) {
  const Vec a = abs_vec(x);
  const Vec e = exp_nonpositive(-2.0f * a);
  const Vec far = (1.0f - e) / (1.0f + e);
  const Vec x2 = a * a;
  Vec p = splat(21844.0f / 6081075.0f);
  p = mul_add(p, x2, splat(-1382.0f / 155925.0f));
  p = mul_add(p, x2, splat(62.0f / 2835.0f));
  p = mul_add(p, x2, splat(-17.0f / 315.0f));
  p = mul_add(p, x2, splat(2.0f / 15.0f));
  p = mul_add(p, x2, splat(-1.0f / 3.0f));
  const Vec near = mul_add(a * x2, p, a);
  const Vec magnitude = a < 0.5f ? near : far;
  const Vec result = from_bits(to_bits(magnitude) | (to_bits(x) & std::int32_t{-2147483647 - 1}));
  return x != x ? x : result;
}

// e^x - 1 for x <= 0 or NaN (what elu and selu ask for): the Taylor series to x^9/9!
// where e^x - 1 would cancel (x > -0.5; truncation below 3e-10 there), e^x - 1
// elsewhere, where e^x >= 0.6 makes the subtraction exact. Measured as elu(alpha=1)
// through the engine against float64 expm1 on every 97th float in [-88, 0] (11.5
// million values; Sapphire Rapids Xeon, avx512): relative error at most 8.9e-8.
inline Vec expm1_nonpositive(Vec x) {
  Vec p = splat(1.0f / 362880.0f);
  p = mul_add(p, x, splat(1.0f / 40320.0f));
  p = mul_add(p, x, splat(1.0f / 5040.0f));
  p = mul_add(p, x, splat(1.0f / 720.0f));
  p = mul_add(p, x, splat(1.0f / 120.0f));
  p = mul_add(p, x, splat(1.0f / 24.0f));
  p = mul_add(p, x, splat(1.0f / 6.0f));
  p = mul_add(p, x, splat(0.5f));
  const Vec near = mul_add(x * x, p, x);
  const Vec far = exp_nonpositive(x) - 1.0f;
  return x > -0.5f ? near : far;  // NaN takes far: NaN
}

// Natural logarithm for x positive and normal (or NaN, returned as it is), all that
// log_softmax (a sum of exponentials, at least 1) and log1p_nonnegative ask for. Cephes'
// logf: x = m * 2^e with m in [sqrt(1/2), sqrt(2)), log(m) by a degree-9 polynomial
// in m - 1, ln 2 split in two so that e * ln 2 adds no rounding. Measured as
// -log_softmax of n equal values (= log n) against float64 for n = 2..1199, 4095, 4096,
// 5000, 65536 (Sapphire Rapids Xeon, avx512): relative error at most 5.3e-8.
inline Vec log_vec(Vec x) {
  const IntVec bits = to_bits(x);
  IntVec exponent = (bits >> 23) - 126;  // x = m * 2^exponent, m in [0.5, 1)
  Vec m = from_bits((bits & ~0x7f800000) | 0x3f000000);  // exponent of 0.5
  const IntVec below = m < 0.707106781186547524f;
  exponent += below;  // -1 where m is doubled below
  m = (below ? m + m : m) - 1.0f;
  const Vec z = m * m;
  Vec p = splat(7.0376836292e-2f);
  p = mul_add(p, m, splat(-1.1514610310e-1f));
  p = mul_add(p, m, splat(1.1676998740e-1f));
  p = mul_add(p, m, splat(-1.2420140846e-1f));
  p = mul_add(p, m, splat(1.4249322787e-1f));
  p = mul_add(p, m, splat(-1.6668057665e-1f));
  p = mul_add(p, m, splat(2.0000714765e-1f));
  p = mul_add(p, m, splat(-2.4999993993e-1f));
  p = mul_add(p, m, splat(3.3333331174e-1f));
  const Vec e = __builtin_convertvector(exponent, Vec);
  Vec y = p * m * z;
  y = mul_add(e, splat(-2.12194440e-4f), y);
  y = mul_add(z, splat(-0.5f), y);
  const Vec result = mul_add(e, splat(0.693359375f), m + y);
  return x != x ? x : result;
}

// log(1 + u) for u >= 0 or NaN (softplus asks for u = e^-|x| in [0, 1]): log(w) * u /
// (w - 1) with w = 1 + u rounded, which cancels the rounding of w (Goldberg, "What
// every computer scientist should know about floating-point arithmetic", theorem 4);
// u itself where w rounds to 1. Measured as softplus (epilogues.cpp) against float64
// on every 97th float in [-100, 100] (Sapphire Rapids Xeon, avx512): relative error at
// most 2.2e-7.
inline Vec log1p_nonnegative(Vec u) {
  const Vec w = 1.0f + u;
  const Vec rounded = w - 1.0f;
  const Vec corrected = log_vec(w) * (u / (rounded == 0.0f ? splat(1.0f) : rounded));
  return rounded == 0.0f ? u : corrected;
}

// erfc(z) for z >= 0 (NaN gives NaN): the Chebyshev fit of Numerical Recipes (2nd ed.,
// 6.2, erfcc), t * e^(-z^2 + P(t)) with t = 1 / (1 + z/2), relative error below 1.2e-7
// in exact arithmetic for every z >= 0: the tail keeps its relative accuracy, where
// 1 - erf(z) would cancel. Measured as gelu (epilogues.cpp) against float64 on every
// 97th float in [-20, 20] (22.7 million values; Sapphire Rapids Xeon, avx512): error at
// most 1.4e-7 x max(1, |gelu(x)|), relative error 1.4e-5 at x = -11.6 (gelu = -1e-29),
// where the rounding of the exponent -z^2 (about -67) dominates.
inline Vec erfc_nonnegative(Vec z) {
  const Vec t = 1.0f / mul_add(z, splat(0.5f), splat(1.0f));
  Vec p = splat(0.17087277f);
  p = mul_add(p, t, splat(-0.82215223f));
  p = mul_add(p, t, splat(1.48851587f));
  p = mul_add(p, t, splat(-1.13520398f));
  p = mul_add(p, t, splat(0.27886807f));
  p = mul_add(p, t, splat(-0.18628806f));
  p = mul_add(p, t, splat(0.09678418f));
  p = mul_add(p, t, splat(0.37409196f));
  p = mul_add(p, t, splat(1.00002368f));
  p = mul_add(p, t, splat(-1.26551223f));
  Vec exponent = mul_add(-z, z, p);
  // P(1) = 3e-8 leaves the exponent above 0 at z = 0; NaN becomes 0 here, t carries it.
  exponent = exponent < 0.0f ? exponent : splat(0.0f);
  return t * exp_nonpositive(exponent);
}

}  // namespace mlpinfer::kernels::MLPINFER_FAMILY
