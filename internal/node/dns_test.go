package node

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	mdns "github.com/miekg/dns"
)

// TestDNSRecordsSavedInDataDir: the node gives its DNS server a records
// file in data_dir, so runtime records outlive the node.
func TestDNSRecordsSavedInDataDir(t *testing.T) {
	dir := t.TempDir()
	yaml := fmt.Sprintf(`node: test
data_dir: %s
edge:
  listen: 127.0.0.1:0
dns:
  listen: ["127.0.0.1:0"]
  zones:
    - origin: example.com
      records: ["www 300 IN A 192.0.2.1"]
  health: {disabled: true}
  rrl: {disabled: true}
`, dir)
	n1, _ := startNode(t, yaml)
	rr, err := mdns.NewRR(`_acme-challenge.example.com. 60 IN TXT "token"`)
	if err != nil {
		t.Fatal(err)
	}
	if err := n1.DNS().AddRecord(rr); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "dns-records.json")); err != nil {
		t.Fatalf("records file: %v", err)
	}
	serial, _ := n1.DNS().Serial("example.com")

	n2, _ := startNode(t, yaml)
	found := false
	for _, got := range n2.DNS().Records("example.com") {
		found = found || mdns.IsDuplicate(got, rr)
	}
	if !found {
		t.Fatal("a new node on the same data_dir does not serve the runtime record")
	}
	if got, _ := n2.DNS().Serial("example.com"); got != serial {
		t.Fatalf("serial on the new node = %d, want %d", got, serial)
	}
}
