package histogram

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// bound is RelativeError with room for the rounding of the bucket table.
const bound = RelativeError * (1 + 1e-9)

func relErr(got, want float64) float64 {
	if want == 0 {
		return math.Abs(got)
	}
	return math.Abs(got-want) / want
}

func TestSlotValueWithinBound(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(v float64) {
		t.Helper()
		s := Slot(v)
		if e := relErr(Value(s), v); e > bound {
			t.Fatalf("Value(Slot(%g)) = %g (slot %d): relative error %g > %g", v, Value(s), s, e, RelativeError)
		}
	}
	for range 200000 {
		// Log-uniform over the whole covered range.
		check(math.Exp(math.Log(MinValue) + rng.Float64()*(math.Log(MaxValue)-math.Log(MinValue))))
	}
	// Every boundary, and its neighbours.
	for s := 1; s < numSlots-1; s++ {
		for _, v := range []float64{upper[s], math.Nextafter(upper[s], 0), math.Nextafter(upper[s], math.Inf(1))} {
			if v >= MinValue && v <= MaxValue {
				check(v)
			}
		}
	}
	for _, v := range []float64{1, 0.5, 2, 10, 100, 1000, 60000, 3600000} {
		check(v)
	}
}

func TestSlotEdges(t *testing.T) {
	t.Parallel()
	for _, v := range []float64{0, -1, math.Inf(-1), math.NaN()} {
		if s := Slot(v); s != 0 || Value(s) != 0 {
			t.Errorf("Slot(%g) = %d (value %g), want the zero slot", v, s, Value(s))
		}
	}
	if s := Slot(1e-9); s != 1 {
		t.Errorf("Slot(1e-9) = %d, want the lowest bucket", s)
	}
	if s := Slot(math.Inf(1)); s != numSlots-1 {
		t.Errorf("Slot(+Inf) = %d, want the highest bucket %d", s, numSlots-1)
	}
	if s := Slot(1e12); s != numSlots-1 {
		t.Errorf("Slot(1e12) = %d, want the highest bucket", s)
	}
	if MinValue > 0.001 || MaxValue < 1e7 {
		t.Errorf("range [%g, %g] is narrower than documented", MinValue, MaxValue)
	}
	// Slots grow with values.
	prev := 0
	for v := 1e-4; v < 2e7; v *= 1.003 {
		s := Slot(v)
		if s < prev {
			t.Fatalf("Slot(%g) = %d after %d", v, s, prev)
		}
		prev = s
	}
}

// exactPercentile is the nearest-rank percentile of values.
func exactPercentile(values []float64, p int) float64 {
	s := slices.Clone(values)
	slices.Sort(s)
	rank := max((len(s)*p+99)/100, 1)
	return s[rank-1]
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 300 {
		n := 1 + rng.IntN(2000)
		values := make([]float64, n)
		var parts [3]Hist
		for i := range values {
			switch rng.IntN(4) {
			case 0:
				values[i] = float64(rng.IntN(20)) // small integers, 0 included
			default:
				values[i] = math.Exp(rng.NormFloat64()*1.5 + 5)
			}
			parts[rng.IntN(3)].Add(values[i])
		}
		// Merge the parts in several ways: directly, through the encoding,
		// and in a Sum of encodings and values.
		var direct, encoded Hist
		var sum Sum
		for i := range parts {
			direct.Merge(&parts[i])
			if err := encoded.MergeBinary(parts[i].AppendBinary(nil)); err != nil {
				t.Fatal(err)
			}
			if i < 2 {
				if err := sum.AddEncoded(parts[i].AppendBinary(nil)); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, b := range parts[2].Bins() {
			for range b.Count {
				sum.AddValue(Value(b.Slot))
			}
		}
		for _, h := range []interface {
			Count() int64
			Percentile(int) float64
		}{&direct, &encoded, &sum} {
			if h.Count() != int64(n) {
				t.Fatalf("trial %d: count %d, want %d", trial, h.Count(), n)
			}
			for _, p := range []int{1, 25, 50, 90, 95, 99, 100} {
				want := exactPercentile(values, p)
				if got := h.Percentile(p); relErr(got, want) > bound {
					t.Fatalf("trial %d: p%d = %g, exact %g", trial, p, got, want)
				}
			}
		}
	}
	var empty Hist
	var emptySum Sum
	if empty.Percentile(50) != 0 || emptySum.Percentile(50) != 0 {
		t.Error("empty histogram: want 0")
	}
}

// TestSumWidens adds slots far apart, in both directions.
func TestSumWidens(t *testing.T) {
	t.Parallel()
	var s Sum
	var h Hist
	for _, v := range []float64{100, 1e-6, 5e6, 0, 100, 7, 1e12, 3} {
		s.AddValue(v)
		h.Add(v)
	}
	if s.Count() != h.Count() {
		t.Fatalf("count %d, want %d", s.Count(), h.Count())
	}
	for p := 1; p <= 100; p++ {
		if s.Percentile(p) != h.Percentile(p) {
			t.Errorf("p%d = %g, want %g", p, s.Percentile(p), h.Percentile(p))
		}
	}
	if err := s.AddEncoded([]byte{9}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("AddEncoded(garbage) = %v", err)
	}
}

func TestEncoding(t *testing.T) {
	t.Parallel()
	var a, b Hist
	for _, v := range []float64{0, 0, 1, 1, 1, 2.5, 1000, 1e9, 1e-7} {
		a.Add(v)
	}
	for _, v := range []float64{1, 7, 7, 1000} {
		b.Add(v)
	}
	ea, eb := a.AppendBinary(nil), b.AppendBinary(nil)
	m, err := MergeEncoded(ea, eb)
	if err != nil {
		t.Fatal(err)
	}
	var want Hist
	want.Merge(&a)
	want.Merge(&b)
	if got := want.AppendBinary(nil); string(got) != string(m) {
		t.Fatalf("MergeEncoded = %x, want %x", m, got)
	}
	var back Hist
	if err := back.MergeBinary(m); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Bins(), want.Bins()) || back.Count() != 13 {
		t.Fatalf("decoded %v (%d), want %v", back.Bins(), back.Count(), want.Bins())
	}
	var empty Hist
	if e := empty.AppendBinary(nil); len(e) != 1 {
		t.Errorf("empty encoding %x", e)
	}
	var self Hist
	self.Add(3)
	self.Merge(&self)
	if self.Count() != 2 || self.Bins()[0].Count != 2 {
		t.Errorf("merging a histogram into itself: %v", self.Bins())
	}

	for _, bad := range [][]byte{
		nil,
		{},
		{2, 1, 1},
		{formatV1, 1},                         // no count
		{formatV1, 1, 0},                      // zero count
		{formatV1, 1, 1, 0, 1},                // a repeated slot
		{formatV1, 0xff, 0xff, 0xff, 0x7f, 1}, // slot out of range
		{formatV1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // count overflow
	} {
		var h Hist
		if err := h.MergeBinary(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("MergeBinary(%x) = %v, want ErrCorrupt", bad, err)
		}
		if _, err := MergeEncoded(bad, ea); !errors.Is(err, ErrCorrupt) {
			t.Errorf("MergeEncoded(%x, ...) = %v, want ErrCorrupt", bad, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	var h Hist
	for _, v := range []float64{0, 1, 2, 3, 1e6} {
		h.Add(v)
	}
	f.Add(h.AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Hist
		if err := h.MergeBinary(b); err != nil {
			return
		}
		// What decodes re-encodes to the same histogram (varints may
		// have been spelled longer than needed).
		var back Hist
		if err := back.MergeBinary(h.AppendBinary(nil)); err != nil {
			t.Fatalf("re-encoded histogram does not decode: %v", err)
		}
		if !slices.Equal(back.Bins(), h.Bins()) || back.Count() != h.Count() {
			t.Fatalf("round trip changed %v into %v", h.Bins(), back.Bins())
		}
	})
}

func BenchmarkMergeBinary(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	var h Hist
	for range 500 {
		h.Add(math.Exp(rng.NormFloat64() + 6))
	}
	enc := h.AppendBinary(nil)
	b.SetBytes(int64(len(enc)))
	var acc Hist
	for b.Loop() {
		if err := acc.MergeBinary(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMergeEncoded(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	var big, small Hist
	for range 5000 {
		big.Add(math.Exp(rng.NormFloat64()*0.6 + 6))
	}
	for range 3 {
		small.Add(math.Exp(rng.NormFloat64()*0.6 + 6))
	}
	eb, es := big.AppendBinary(nil), small.AppendBinary(nil)
	b.Logf("%d and %d bytes", len(eb), len(es))
	buf := make([]byte, 0, 4096)
	for b.Loop() {
		var err error
		if buf, err = AppendMerged(buf[:0], eb, es); err != nil {
			b.Fatal(err)
		}
	}
}
