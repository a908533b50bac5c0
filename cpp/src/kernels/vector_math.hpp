// exp, sigmoid and tanh on the family's vectors (std::exp is a libm call that GCC only
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

}  // namespace mlpinfer::kernels::MLPINFER_FAMILY
