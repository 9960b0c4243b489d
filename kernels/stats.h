/*
 * stats.h — order statistics of measured samples (latencies, timings).
 *
 * Percentiles follow the "linear" definition (numpy.percentile's default,
 * Hyndman & Fan type 7): the q-quantile of n sorted samples sits at position
 * h = q (n - 1) and is interpolated between samples floor(h) and ceil(h).
 * So p50 of an even count is the mean of the middle two, p0/p100 are the
 * min/max, and a larger q never gives a smaller value (the truncating index
 * lat[(n - 1) * 0.99] this replaces put p99 below p50 for n = 2).
 */
#ifndef US_STATS_H
#define US_STATS_H

#include <stddef.h>

/* Sorts x[0..n) ascending in place (NaNs last).
 * Returns: nothing; cannot fail. */
void us_sort_doubles(double *x, size_t n);

/* The q-quantile (q in [0, 1], clamped) of sorted[0..n), ascending.
 * Returns: the interpolated value; NaN for n == 0. */
double us_percentile_sorted(const double *sorted, size_t n, double q);

/* The clock samples are taken with: CLOCK_MONOTONIC (never jumps with the
 * wall clock, so a duration is never negative).
 * Returns: seconds since an arbitrary fixed point. */
double us_now_s(void);

#endif
