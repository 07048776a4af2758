//go:build linux

package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// chart is one figure: a value of each relay's summary against room size.
type chart struct {
	file, title, ylabel string
	logY                bool
	value               func(*Summary) float64 // <= 0: no point
}

var charts = []chart{
	{"deliveries", "Sustained deliveries/s (>= 99.9% delivered)", "deliveries/s", true,
		func(s *Summary) float64 { return s.SustainedPerS }},
	{"p99", "p99 latency at the lowest offered rate (50,000 deliveries/s)", "p99 µs", true,
		func(s *Summary) float64 { return s.P99FirstUs }},
	{"cpu", "Relay CPU per delivery at the sustained rate", "CPU µs per delivery", false,
		func(s *Summary) float64 { return s.CPUusPerDeliv }},
}

// writePlots writes each chart as DIR/NAME.svg and DIR/NAME.png from the
// room scenarios of rep (those named room<N>), one line per relay.
func writePlots(dir string, rep *Report) ([]string, error) {
	series := map[string]map[int]*Summary{} // relay -> members -> summary
	var order []string
	for si := range rep.Scenarios {
		s := &rep.Scenarios[si]
		if !strings.HasPrefix(s.Name, "room") || s.DerivedOf != "" {
			continue
		}
		for i := range s.Summary {
			sum := &s.Summary[i]
			if series[sum.Relay] == nil {
				series[sum.Relay] = map[int]*Summary{}
				order = append(order, sum.Relay)
			}
			series[sum.Relay][sum.Members] = sum
		}
	}
	if len(series) == 0 {
		return nil, errors.New("no room scenario (room10, room100, room1000) ran")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	for _, ch := range charts {
		p := plot.New()
		p.Title.Text = ch.title
		p.X.Label.Text = "members in the room"
		p.Y.Label.Text = ch.ylabel
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 10, Label: "10"}, {Value: 100, Label: "100"}, {Value: 1000, Label: "1,000"}})
		if ch.logY {
			p.Y.Scale = plot.LogScale{}
			p.Y.Tick.Marker = humanTicks{}
		}
		p.Legend.Top = true
		p.Legend.Left = true
		var args []any
		lo, hi := 0.0, 0.0
		for _, relay := range order {
			var ms []int
			for m := range series[relay] {
				ms = append(ms, m)
			}
			sort.Ints(ms)
			var xys plotter.XYs
			for _, m := range ms {
				if v := ch.value(series[relay][m]); v > 0 {
					xys = append(xys, plotter.XY{X: float64(m), Y: v})
					if lo == 0 || v < lo {
						lo = v
					}
					hi = max(hi, v)
				}
			}
			if len(xys) > 0 {
				args = append(args, relay, xys)
			}
		}
		if len(args) == 0 {
			continue
		}
		if err := plotutil.AddLinePoints(p, args...); err != nil {
			return files, err
		}
		p.X.Min, p.X.Max = 7, 1400
		// Head room above the highest line for the legend.
		if ch.logY {
			p.Y.Min, p.Y.Max = lo/1.5, hi*6
		} else {
			p.Y.Min, p.Y.Max = 0, hi*1.6
		}
		for _, ext := range []string{"svg", "png"} {
			f := filepath.Join(dir, ch.file+"."+ext)
			if err := p.Save(7*vg.Inch, 4.5*vg.Inch, f); err != nil {
				return files, fmt.Errorf("%s: %w", f, err)
			}
			files = append(files, f)
		}
	}
	return files, nil
}

// humanTicks labels a log axis 1, 10, 100, 1k, 10k, 100k, 1M... and marks
// 2 and 5 of each decade.
type humanTicks struct{}

func (humanTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for d := math.Pow10(int(math.Floor(math.Log10(lo)))); d <= hi; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			v := d * m
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 {
				t.Label = human(v)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// human writes 1,500,000 as 1.5M and 20,000 as 20k.
func human(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
