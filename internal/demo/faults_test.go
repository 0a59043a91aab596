package demo

import (
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestFaultsErrorRate(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	for _, rate := range []float64{0, 0.2, 1} {
		h := (&Faults{ErrorRate: rate}).wrap(ok, slog.New(slog.NewTextHandler(io.Discard, nil)))
		fails := 0
		const n = 5000
		for i := 0; i < n; i++ {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			if rec.Code == 500 {
				fails++
			}
		}
		if got := float64(fails) / n; got < rate-0.03 || got > rate+0.03 {
			t.Errorf("error rate %g: %d of %d answered 500", rate, fails, n)
		}
	}
}

func TestFaultsFlags(t *testing.T) {
	f, err := ParseFaults("0.1", "3s")
	if err != nil || f.ErrorRate != 0.1 || f.CrashAfter != 3*time.Second {
		t.Fatalf("ParseFaults: %+v, %v", f, err)
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.RegisterFlags(fs)
	if err := fs.Parse([]string{"-demo-error-rate", "0.5", "-demo-crash-after", "2s"}); err != nil || f.ErrorRate != 0.5 || f.CrashAfter != 2*time.Second {
		t.Errorf("flags: %+v, %v", f, err)
	}
	for _, bad := range [][]string{{"-demo-error-rate", "1.5"}, {"-demo-error-rate", "x"}, {"-demo-crash-after", "-1s"}} {
		if err := fs.Parse(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if _, err := ParseFaults("2", "0s"); err == nil {
		t.Error("ParseFaults accepted an error rate of 2")
	}
}
