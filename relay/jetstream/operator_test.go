package jetstream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/jetstream"
)

// connect opens another in-process connection to e's server, closed when
// the test ends (before the server).
func connect(t *testing.T, e *jetstream.Embedded) natsjs.JetStream {
	t.Helper()
	return jsOver(t, "", nats.InProcessServer(e.Server))
}

// jsOver connects to url with opts, closed when the test ends, and returns
// JetStream over it.
func jsOver(t *testing.T, url string, opts ...nats.Option) natsjs.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func newOperator(t *testing.T, js natsjs.JetStream) *jetstream.Operator {
	t.Helper()
	o, err := jetstream.NewOperator(js, jetstream.OperatorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// The operator's records survive a restart of the server on the same
// directory, each with its end; one that ended meanwhile is not loaded,
// and is gone from the bucket.
func TestOperatorSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir)
	o := newOperator(t, e.JS)
	until := time.Now().Add(time.Hour).Round(0)
	for _, r := range []relay.OperatorRecord{
		{Kind: relay.RecordBan, Key: "name mallory", Value: []byte(`{"target":"mallory","reason":"spam"}`)},
		{Kind: relay.RecordBan, Key: "addr 10.0.0.0/8", Expires: until, Value: []byte(`{"target":"10.0.0.0/8"}`)},
		{Kind: relay.RecordBan, Key: "name eve", Expires: time.Now().Add(-time.Second), Value: []byte(`{"target":"eve"}`)},
		{Kind: relay.RecordLockdown, Key: "relay", Value: []byte(`{}`)},
	} {
		if _, err := o.Put(r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := o.Delete(relay.RecordLockdown, "relay"); err != nil {
		t.Fatal(err)
	}
	e.Close()

	e2 := start(t, dir)
	recs, _, err := newOperator(t, e2.JS).Load()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]relay.OperatorRecord{}
	for _, r := range recs {
		got[r.Kind+" "+r.Key] = r
	}
	if len(got) != 2 || got["ban name mallory"].Rev == 0 || !got["ban name mallory"].Expires.IsZero() ||
		!got["ban addr 10.0.0.0/8"].Expires.Equal(until) {
		t.Fatalf("after a restart Load gives %+v", recs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := e2.JS.KeyValue(ctx, "chatrelay_operator")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("the bucket holds %q after the load, want the two records in force", keys)
	}
}

// A kind or key the bucket cannot name is refused, not stored under
// another name.
func TestOperatorRefusesBadNames(t *testing.T) {
	o := newOperator(t, start(t, t.TempDir()).JS)
	for _, r := range []relay.OperatorRecord{
		{Kind: "", Key: "x"}, {Kind: "ban", Key: ""}, {Kind: "Ban", Key: "x"}, {Kind: "ban.x", Key: "y"}, {Kind: "*", Key: "y"},
	} {
		r.Value = []byte(`{}`)
		if _, err := o.Put(r); err == nil {
			t.Errorf("Put(%q %q) succeeded", r.Kind, r.Key)
		}
		if _, err := o.Delete(r.Kind, r.Key); err == nil {
			t.Errorf("Delete(%q %q) succeeded", r.Kind, r.Key)
		}
	}
	if _, err := o.Put(relay.OperatorRecord{Kind: "ban", Key: "x", Value: []byte(`not json`)}); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a value that is not JSON: %v", err)
	}
}
