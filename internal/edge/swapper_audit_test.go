package edge

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// A request runs to the end on the handler it started with, even when a
// reload swaps in a new one mid-request.
func TestSwapperInFlightFinishesOnOld(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	old := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "old")
	})
	s := NewSwapper(old)
	done := make(chan string)
	go func() {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		done <- w.Body.String()
	}()
	<-started
	s.Store(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "new") }))
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Body.String() != "new" {
		t.Errorf("new request got %q", w.Body)
	}
	close(release)
	if got := <-done; got != "old" {
		t.Errorf("in-flight request got %q", got)
	}
}
