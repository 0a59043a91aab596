//go:build linux

package master

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// controlMaster is a master with a fake supervisor and a loop that runs
// control requests, enough to serve the control API without processes.
func controlMaster(t testing.TB) *master {
	h := newHarness(t, superConfig{desired: 2})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := &master{
		cfg: Config{Version: "test"}, log: log, sup: h.s, owner: newOwner(), quit: make(chan struct{}),
		started: time.Now(), stopReq: make(chan struct{}, 1), res: &resources{notify: &notifySocket{}},
		up: newUpgrade(&fakeUpgrader{}, &fakeSuccessor{}, &fakeNotifier{}, log, 1, nil, ""),
	}
	go func() {
		defer close(m.done)
		for {
			select {
			case f := <-m.ops:
				f()
			case <-m.quit:
				return
			}
		}
	}()
	t.Cleanup(func() { close(m.quit); <-m.done })
	return m
}

func TestControlAPI(t *testing.T) {
	m := controlMaster(t)
	h := controlHandler(m)
	do := func(method, target string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		req := httptest.NewRequest(method, target, nil).WithContext(ctx)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if code, body := do("GET", "/status"); code != 200 || !strings.Contains(body, `"workers_desired": 2`) {
		t.Errorf("GET /status: %d %s", code, body)
	}
	if code, body := do("POST", "/scale?workers=3"); code != 200 || !strings.Contains(body, `"ok": true`) {
		t.Errorf("scale 3: %d %s", code, body)
	}
	for _, bad := range []string{"/scale?workers=0", "/scale?workers=x", "/scale?workers=99999", "/scale"} {
		if code, body := do("POST", bad); code != 400 || !strings.Contains(body, "error") {
			t.Errorf("POST %s: %d %s, want 400 with an error", bad, code, body)
		}
	}
	if code, body := do("POST", "/reload"); code != 409 || !strings.Contains(body, "not ready") {
		t.Errorf("reload before ready: %d %s, want 409", code, body)
	}
	if code, _ := do("GET", "/reload"); code != 405 {
		t.Errorf("GET /reload: %d, want 405", code)
	}
	if code, _ := do("GET", "/nope"); code != 404 {
		t.Errorf("GET /nope: %d, want 404", code)
	}
}

// FuzzControlAPI sends arbitrary requests to the control API: it never
// panics, and answers with a known status; errors are JSON.
func FuzzControlAPI(f *testing.F) {
	for _, s := range []struct{ method, target, body string }{
		{"GET", "/status", ""}, {"POST", "/scale?workers=4", ""}, {"POST", "/scale?workers=-1", ""},
		{"POST", "/scale?workers=1e9", ""}, {"POST", "/restart", "x"}, {"POST", "/reload", ""},
		{"DELETE", "/stop", ""}, {"GET", "/status?x=%zz", ""}, {"POST", "/scale?workers=2&workers=3", "{}"},
	} {
		f.Add(s.method, s.target, []byte(s.body))
	}
	m := controlMaster(f)
	h := controlHandler(m)
	f.Fuzz(func(t *testing.T, method, target string, body []byte) {
		if strings.Contains(target, "stop") {
			return // would end the shared master
		}
		req, err := http.NewRequest(method, "http://preforkd"+target, bytes.NewReader(body))
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.WithContext(ctx))
		switch rec.Code {
		case 200, 400, 409:
			var v map[string]any
			if rec.Body.Len() > 0 && json.Unmarshal(rec.Body.Bytes(), &v) != nil {
				t.Fatalf("%s %s: %d with a body that is not JSON: %q", method, target, rec.Code, rec.Body)
			}
		case 404, 405, 301, 307, 308: // unknown, wrong method, or a non-canonical path redirected
		default:
			t.Fatalf("%s %s: status %d", method, target, rec.Code)
		}
	})
}
