// Package histogram keeps latencies as counts in fixed, logarithmically
// spaced buckets, so that percentiles can be read from sums of many
// histograms with a bounded relative error. The usage rollups store one
// histogram per row; merging two of them is adding counts bucket by bucket.
//
// # Buckets
//
// Bucket i (an integer, negative below 1 ms) holds the values x with
//
//	γ^(i-1) < x ≤ γ^i,   γ = (1+α)/(1-α),   α = [RelativeError] = 1 %
//
// and stands for the single value 2γ^i/(γ+1), which is within α of every
// value of the bucket, at both ends. A percentile read from a histogram is
// the representative of the bucket that holds the exact percentile, so it
// is within 1 % of the exact value, however many histograms were merged:
// merging loses nothing, since the buckets are the same everywhere.
//
// The buckets cover [MinValue, MaxValue], 1 µs to about 2.8 hours (the
// values are milliseconds). A value below MinValue (but above zero) is
// counted in the lowest bucket and read back as about 1 µs, so its error is
// under 1 µs rather than 1 %; a value above MaxValue is counted in the
// highest bucket and read back as about 2.8 hours. Zero, negative and NaN
// values have a bucket of their own, read back as exactly 0.
//
// # Encoding
//
// [Hist.AppendBinary] writes a histogram as a format byte (1) followed by
// one pair of unsigned varints per non-empty bucket, in bucket order: the
// distance from the previous bucket's slot and the count. Slots number the
// buckets from 0 (the zero bucket) upward. An hour of one model's requests
// takes a few dozen bytes.
package histogram

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// RelativeError is the bound on |reported - exact| / exact of a percentile
// read from a histogram, for values in [MinValue, MaxValue].
const RelativeError = 0.01

// gamma is the ratio between the upper bounds of two neighbouring buckets.
const gamma = (1 + RelativeError) / (1 - RelativeError)

// Bucket numbers of the lowest and highest bucket, and the value range they
// cover with the relative error bound.
const (
	minBucket = -345 // γ^-346 ≈ 0.00099 ms is the lowest bound
	maxBucket = 806  // γ^806 ≈ 1.0e7 ms
)

var (
	// MinValue and MaxValue bound the values whose percentiles are within
	// RelativeError; see the package comment for the others.
	MinValue = math.Pow(gamma, minBucket-1)
	MaxValue = math.Pow(gamma, maxBucket)
)

// Slots: 0 is the zero bucket, 1 is minBucket, numSlots-1 is maxBucket.
const numSlots = maxBucket - minBucket + 2

// formatV1 is the first byte of an encoded histogram.
const formatV1 = 1

var (
	logGamma = math.Log(gamma)
	// upper[s] is the upper bound of slot s (s ≥ 1); the value of slot s
	// lies in (upper[s-1], upper[s]].
	upper [numSlots]float64
	// value[s] is the value slot s stands for.
	value [numSlots]float64
)

func init() {
	for s := 1; s < numSlots; s++ {
		i := s - 1 + minBucket
		upper[s] = math.Pow(gamma, float64(i))
		value[s] = 2 * upper[s] / (gamma + 1)
	}
}

// Slot returns the slot of a value in milliseconds.
func Slot(v float64) int {
	if !(v > 0) { // zero, negative, NaN
		return 0
	}
	if v <= upper[1] {
		return 1
	}
	if v > upper[numSlots-2] {
		return numSlots - 1
	}
	// The logarithm gives the bucket up to rounding; the table decides,
	// so that a value on a boundary always lands in the same bucket.
	s := int(math.Ceil(math.Log(v)/logGamma)) - minBucket + 1
	s = min(max(s, 2), numSlots-1)
	for s > 1 && v <= upper[s-1] {
		s--
	}
	for s < numSlots-1 && v > upper[s] {
		s++
	}
	return s
}

// Value returns the value that slot s stands for: 0 for slot 0, else the
// representative of its bucket.
func Value(s int) float64 {
	if s <= 0 || s >= numSlots {
		return 0
	}
	return value[s]
}

// Bin is one non-empty bucket: its slot and how many values it holds.
type Bin struct {
	Slot  int
	Count int64
}

// Hist is a histogram: a count per slot. The zero value is empty and ready
// to use. Add is cheap (it appends); the other methods sort what was added
// first.
type Hist struct {
	bins    []Bin   // sorted by slot, counts > 0
	pending []int32 // slots added by Add, not yet in bins
	n       int64
	// spare and scratch are buffers kept for the next merge: spare holds
	// the bins before the last merge, scratch the bins being merged in.
	spare, scratch []Bin
}

// Add counts one value, in milliseconds.
func (h *Hist) Add(v float64) {
	h.pending = append(h.pending, int32(Slot(v)))
	h.n++
}

// Count returns the number of values counted.
func (h *Hist) Count() int64 { return h.n }

// Reset empties h, keeping its memory.
func (h *Hist) Reset() {
	h.bins, h.pending, h.n = h.bins[:0], h.pending[:0], 0
}

// Bins returns the non-empty buckets in slot order. The slice is h's own:
// it is valid until h changes.
func (h *Hist) Bins() []Bin {
	h.settle()
	return h.bins
}

// settle merges the pending slots into bins.
func (h *Hist) settle() {
	if len(h.pending) == 0 {
		return
	}
	slices.Sort(h.pending)
	add := h.scratch[:0]
	for i := 0; i < len(h.pending); {
		j := i + 1
		for j < len(h.pending) && h.pending[j] == h.pending[i] {
			j++
		}
		add = append(add, Bin{Slot: int(h.pending[i]), Count: int64(j - i)})
		i = j
	}
	h.pending = h.pending[:0]
	h.mergeBins(add)
	h.scratch = add[:0]
}

// mergeBins adds the sorted bins b to h.bins. b must not be h.bins or
// h.spare.
func (h *Hist) mergeBins(b []Bin) {
	if len(b) == 0 {
		return
	}
	if len(h.bins) == 0 {
		h.bins = append(h.bins, b...)
		return
	}
	out := h.spare[:0]
	i, j := 0, 0
	for i < len(h.bins) && j < len(b) {
		switch {
		case h.bins[i].Slot < b[j].Slot:
			out = append(out, h.bins[i])
			i++
		case h.bins[i].Slot > b[j].Slot:
			out = append(out, b[j])
			j++
		default:
			out = append(out, Bin{Slot: b[j].Slot, Count: h.bins[i].Count + b[j].Count})
			i++
			j++
		}
	}
	out = append(out, h.bins[i:]...)
	out = append(out, b[j:]...)
	h.bins, h.spare = out, h.bins
}

// Merge adds the counts of o to h.
func (h *Hist) Merge(o *Hist) {
	o.settle()
	h.settle()
	if o == h {
		for i := range h.bins {
			h.bins[i].Count *= 2
		}
		h.n *= 2
		return
	}
	h.mergeBins(o.bins)
	h.n += o.n
}

// ErrCorrupt is wrapped by the errors of decoding a histogram that
// AppendBinary did not write.
var ErrCorrupt = errors.New("corrupt histogram")

// MergeBinary adds the counts of an encoded histogram to h.
func (h *Hist) MergeBinary(b []byte) error {
	h.settle()
	bins, n, err := decode(h.scratch[:0], b)
	h.scratch = bins[:0]
	if err != nil {
		return err
	}
	h.mergeBins(bins)
	h.n += n
	return nil
}

// decode appends the bins of the encoded histogram b to dst, and returns
// them with their total count.
func decode(dst []Bin, b []byte) ([]Bin, int64, error) {
	r := reader{b: b}
	if err := r.start(); err != nil {
		return dst, 0, err
	}
	for r.next() {
		dst = append(dst, Bin{Slot: r.slot, Count: int64(r.count)})
	}
	return dst, int64(r.total), r.err
}

// AppendBinary appends the encoding of h to b.
func (h *Hist) AppendBinary(b []byte) []byte {
	h.settle()
	b = append(b, formatV1)
	prev := -1
	for _, bin := range h.bins {
		d := bin.Slot - prev
		if prev < 0 {
			d = bin.Slot // the first distance is from slot 0
		}
		b = binary.AppendUvarint(b, uint64(d))
		b = binary.AppendUvarint(b, uint64(bin.Count))
		prev = bin.Slot
	}
	return b
}

// MergeEncoded returns the encoding of the sum of two encoded histograms.
// It is what the database calls to merge a rollup row's histogram with a
// new batch's. It reads both encodings in step and writes the sum, without
// decoding either into memory.
func MergeEncoded(a, b []byte) ([]byte, error) {
	return AppendMerged(make([]byte, 0, len(a)+len(b)), a, b)
}

// AppendMerged appends the encoding of the sum of two encoded histograms
// to dst. a and b are only read during the call.
func AppendMerged(dst, a, b []byte) ([]byte, error) {
	ra, rb := reader{b: a}, reader{b: b}
	if err := ra.start(); err != nil {
		return dst, err
	}
	if err := rb.start(); err != nil {
		return dst, err
	}
	dst = append(dst, formatV1)
	prev := -1
	emit := func(slot int, count uint64) {
		d := slot - prev
		if prev < 0 {
			d = slot
		}
		dst = binary.AppendUvarint(dst, uint64(d))
		dst = binary.AppendUvarint(dst, count)
		prev = slot
	}
	okA, okB := ra.next(), rb.next()
	for okA && okB {
		switch {
		case ra.slot < rb.slot:
			emit(ra.slot, ra.count)
			okA = ra.next()
		case ra.slot > rb.slot:
			emit(rb.slot, rb.count)
			okB = rb.next()
		default:
			if ra.count > math.MaxInt64-rb.count {
				return dst, fmt.Errorf("%w: count overflow", ErrCorrupt)
			}
			emit(ra.slot, ra.count+rb.count)
			okA, okB = ra.next(), rb.next()
		}
	}
	for ; okA; okA = ra.next() {
		emit(ra.slot, ra.count)
	}
	for ; okB; okB = rb.next() {
		emit(rb.slot, rb.count)
	}
	if ra.err != nil {
		return dst, ra.err
	}
	return dst, rb.err
}

// reader walks the bins of an encoded histogram.
type reader struct {
	b     []byte
	slot  int
	count uint64
	total uint64
	err   error
}

// start checks the format byte.
func (r *reader) start() error {
	if len(r.b) == 0 || r.b[0] != formatV1 {
		return fmt.Errorf("%w: unknown format", ErrCorrupt)
	}
	r.b, r.slot = r.b[1:], -1
	return nil
}

// next reads the next bin into slot and count; it returns false at the end
// or on an error, kept in err.
func (r *reader) next() bool {
	if len(r.b) == 0 || r.err != nil {
		return false
	}
	d, k := binary.Uvarint(r.b)
	if k <= 0 || d >= numSlots || (r.slot >= 0 && d == 0) {
		r.err = fmt.Errorf("%w: bad slot", ErrCorrupt)
		return false
	}
	r.b = r.b[k:]
	c, k := binary.Uvarint(r.b)
	if k <= 0 || c == 0 || c > math.MaxInt64-r.total {
		r.err = fmt.Errorf("%w: bad count", ErrCorrupt)
		return false
	}
	r.b = r.b[k:]
	if r.slot < 0 {
		r.slot = int(d) // the first distance is from slot 0
	} else {
		r.slot += int(d)
	}
	if r.slot >= numSlots {
		r.err = fmt.Errorf("%w: slot out of range", ErrCorrupt)
		return false
	}
	r.count = c
	r.total += c
	return true
}

// Percentile returns the p-th percentile (0 < p ≤ 100) by the nearest-rank
// method, as the representative of the bucket that holds it: the exact
// nearest-rank value is the ceil(p*n/100)-th smallest of the n values, and
// the result is within RelativeError of it (see the package comment for
// values outside [MinValue, MaxValue]). An empty histogram gives 0.
func (h *Hist) Percentile(p int) float64 {
	h.settle()
	if h.n == 0 {
		return 0
	}
	rank := (h.n*int64(p) + 99) / 100
	rank = max(rank, 1)
	var seen int64
	for _, bin := range h.bins {
		seen += bin.Count
		if seen >= rank {
			return Value(bin.Slot)
		}
	}
	return Value(h.bins[len(h.bins)-1].Slot)
}

// Sum adds up many histograms, or values, in an array of counts indexed by
// slot, for the slots around the lowest and highest seen so far (a few
// hundred: about 5 KB): adding an encoded histogram costs one step
// per non-empty bucket of that histogram, whatever the sum holds already.
// It is what reading many rollup rows into a few results needs; the zero
// value is an empty sum.
type Sum struct {
	lo     int     // the slot of counts[0]
	counts []int64 // counts of slots lo, lo+1, ...
	n      int64
}

// AddValue counts one value, in milliseconds.
func (s *Sum) AddValue(v float64) {
	slot := Slot(v)
	s.cover(slot, slot)
	s.counts[slot-s.lo]++
	s.n++
}

// AddEncoded adds the counts of an encoded histogram. On an error, s may
// hold part of them.
func (s *Sum) AddEncoded(b []byte) error {
	r := reader{b: b}
	if err := r.start(); err != nil {
		return err
	}
	for r.next() {
		i := r.slot - s.lo
		if i < 0 || i >= len(s.counts) {
			s.cover(r.slot, r.slot)
			i = r.slot - s.lo
		}
		s.counts[i] += int64(r.count)
		s.n += int64(r.count)
	}
	return r.err
}

// cover widens the array of counts to hold the slots first to last. It
// widens by 256 slots (a factor of 166) or half as much again, whichever
// is more, on the side that grows: the latencies of one model often span
// four or five orders of magnitude, and copying the array at every new
// bucket costs more than the memory saved.
func (s *Sum) cover(first, last int) {
	lo, hi := s.lo, s.lo+len(s.counts)
	if len(s.counts) > 0 && first >= lo && last < hi {
		return
	}
	if len(s.counts) == 0 {
		lo, hi = first, first
	}
	slack := max(256, (hi-lo)/2)
	if first < lo || len(s.counts) == 0 {
		lo = first - slack
	}
	if last >= hi {
		hi = last + 1 + slack
	}
	lo, hi = max(lo, 0), min(hi, numSlots)
	counts := make([]int64, hi-lo)
	if len(s.counts) > 0 {
		copy(counts[s.lo-lo:], s.counts)
	}
	s.lo, s.counts = lo, counts
}

// Count returns the number of values counted.
func (s *Sum) Count() int64 { return s.n }

// Percentile is Hist.Percentile for the sum.
func (s *Sum) Percentile(p int) float64 {
	if s.n == 0 {
		return 0
	}
	rank := max((s.n*int64(p)+99)/100, 1)
	var seen int64
	for i, c := range s.counts {
		if seen += c; seen >= rank {
			return Value(s.lo + i)
		}
	}
	return 0 // not reached: the counts add up to n
}
