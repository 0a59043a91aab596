package demo

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"time"
)

// Faults make the demo misbehave on purpose, so that an operator (or a
// test) can watch a canary upgrade roll back.
type Faults struct {
	// ErrorRate is the share of requests answered 500 (0 to 1).
	ErrorRate float64
	// CrashAfter, when positive, makes a worker exit with status 1 this
	// long after it starts serving.
	CrashAfter time.Duration
}

// ParseFaults parses the two flags' values (used for their build-time
// defaults too).
func ParseFaults(errorRate, crashAfter string) (*Faults, error) {
	f := &Faults{}
	if err := f.setErrorRate(errorRate); err != nil {
		return nil, fmt.Errorf("-demo-error-rate %q: %w", errorRate, err)
	}
	if err := f.setCrashAfter(crashAfter); err != nil {
		return nil, fmt.Errorf("-demo-crash-after %q: %w", crashAfter, err)
	}
	return f, nil
}

func (f *Faults) setErrorRate(v string) error {
	r, err := strconv.ParseFloat(v, 64)
	if err != nil || r < 0 || r > 1 {
		return errors.New("want a share from 0 to 1 (0.2: one request in five answered 500)")
	}
	f.ErrorRate = r
	return nil
}

func (f *Faults) setCrashAfter(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return errors.New("want a duration such as 2s (0: never)")
	}
	f.CrashAfter = d
	return nil
}

// RegisterFlags adds -demo-error-rate and -demo-crash-after to fs, with
// f's values as their defaults.
func (f *Faults) RegisterFlags(fs *flag.FlagSet) {
	fs.Func("demo-error-rate", fmt.Sprintf("demo: answer 500 to this share of requests, 0 to 1 (default %g)", f.ErrorRate), f.setErrorRate)
	fs.Func("demo-crash-after", fmt.Sprintf("demo: a worker exits 1 after serving this long, 0 = never (default %v)", f.CrashAfter), f.setCrashAfter)
}

// wrap applies the error rate to h, and arms the crash.
func (f *Faults) wrap(h http.Handler, log *slog.Logger) http.Handler {
	if f == nil {
		return h
	}
	if f.CrashAfter > 0 {
		time.AfterFunc(f.CrashAfter, func() {
			log.Error("demo: exiting on purpose (-demo-crash-after)", "after", f.CrashAfter)
			os.Exit(1)
		})
	}
	if f.ErrorRate <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rand.Float64() < f.ErrorRate {
			http.Error(w, "demo: failing on purpose (-demo-error-rate)\n", http.StatusInternalServerError)
			return
		}
		h.ServeHTTP(w, r)
	})
}
