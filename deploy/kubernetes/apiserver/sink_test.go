package apiserver

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// sink is the backend at the end of the gateway's pipeline: an OTLP/HTTP
// endpoint (JSON encoding) that keeps every log record it is sent.
type sink struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []record
	bad error // the first request it could not decode
}

// record is one log record as the backend received it, its resource's
// attributes with it; every value is kept as a string.
type record struct {
	resource map[string]string
	attrs    map[string]string
}

// otlpLogs is the part of an OTLP/JSON ExportLogsServiceRequest read here.
type otlpLogs struct {
	ResourceLogs []struct {
		Resource struct {
			Attributes []keyValue `json:"attributes"`
		} `json:"resource"`
		ScopeLogs []struct {
			LogRecords []struct {
				Attributes []keyValue `json:"attributes"`
			} `json:"logRecords"`
		} `json:"scopeLogs"`
	} `json:"resourceLogs"`
}

type keyValue struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// newSink starts the backend; it stops when the test ends.
func newSink(t testing.TB) *sink {
	t.Helper()
	s := &sink{}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	recs, err := decode(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.bad == nil {
			s.bad = err
		}
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.got = append(s.got, recs...)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte("{}"))
}

func decode(r *http.Request) ([]record, error) {
	if r.URL.Path != "/v1/logs" {
		return nil, fmt.Errorf("%s %s: not the logs path", r.Method, r.URL.Path)
	}
	body := io.Reader(r.Body)
	if r.Header.Get("Content-Encoding") == "gzip" {
		z, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		body = z
	}
	var req otlpLogs
	if err := json.NewDecoder(body).Decode(&req); err != nil {
		return nil, fmt.Errorf("decode OTLP/JSON logs (Content-Type %s): %w", r.Header.Get("Content-Type"), err)
	}
	var out []record
	for _, rl := range req.ResourceLogs {
		res := flatten(rl.Resource.Attributes)
		for _, sl := range rl.ScopeLogs {
			for _, lr := range sl.LogRecords {
				out = append(out, record{resource: res, attrs: flatten(lr.Attributes)})
			}
		}
	}
	return out, nil
}

// flatten turns OTLP/JSON attributes into strings: a string value as it
// is, an int (a JSON string in OTLP/JSON) as its digits, anything else as
// its JSON.
func flatten(kvs []keyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		var v struct {
			S *string          `json:"stringValue"`
			I *json.RawMessage `json:"intValue"`
		}
		_ = json.Unmarshal(kv.Value, &v)
		switch {
		case v.S != nil:
			m[kv.Key] = *v.S
		case v.I != nil:
			m[kv.Key] = strings.Trim(string(*v.I), `"`)
		default:
			m[kv.Key] = string(kv.Value)
		}
	}
	return m
}

// url is the endpoint for the gateway's otlphttp exporter.
func (s *sink) url() string { return s.srv.URL }

// connectsTo returns the records of connects to port, by connecting pid.
func (s *sink) connectsTo(t testing.TB, port int) map[int][]record {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bad != nil {
		t.Fatalf("the backend could not read what the gateway sent: %v", s.bad)
	}
	out := map[int][]record{}
	for _, r := range s.got {
		if r.attrs["network.peer.port"] != strconv.Itoa(port) {
			continue
		}
		pid, _ := strconv.Atoi(r.resource["process.pid"])
		out[pid] = append(out[pid], r)
	}
	return out
}
