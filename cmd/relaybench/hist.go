//go:build linux

package main

import "math/bits"

// hist is a log-linear latency histogram in nanoseconds: values below
// histExact are kept exactly, larger ones with 7 significant bits (under
// 0.8% error). It has a fixed size whatever the number of samples, so a
// receiver records millions of deliveries per second without growing a
// slice. The zero value is empty and ready.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
	max    int64
}

const (
	histExact   = 128
	histBuckets = 58*64 + 64 // shift 57 (the largest for a uint64) ends at bucket 58*64+63
)

func histBucket(v uint64) int {
	if v < histExact {
		return int(v)
	}
	shift := bits.Len64(v) - 7 // >= 1: v>>shift is in [64, 127]
	return (shift+1)*64 + int(v>>shift) - 64
}

// histValue is the middle of bucket b.
func histValue(b int) int64 {
	if b < histExact {
		return int64(b)
	}
	shift := b/64 - 1
	m := int64(b%64 + 64)
	return m<<shift + (int64(1)<<shift)/2
}

// add records v nanoseconds; a negative v (clock skew) counts as 0.
func (h *hist) add(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[histBucket(uint64(v))]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the value below which a fraction p of the samples lie
// (the sample of rank p*(n-1), as a sorted slice would give), or 0 when
// empty. quantile(1) is the exact maximum.
func (h *hist) quantile(p float64) int64 {
	if h.n == 0 {
		return 0
	}
	if p >= 1 {
		return h.max
	}
	rank := uint64(p * float64(h.n-1))
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen > rank {
			return min(histValue(b), h.max)
		}
	}
	return h.max
}
