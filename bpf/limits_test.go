package bpf

import "testing"

// TestFilterLimitsMatchMaps checks the exported limits against the compiled
// object's map sizes, so that the validation's numbers cannot drift from the
// C maps.
func TestFilterLimitsMatchMaps(t *testing.T) {
	spec, err := loadConnect()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		m    string
		want int
	}{
		{"include_cidr", MaxFilterCIDRs},
		{"exclude_cidr", MaxFilterCIDRs},
		{"ports", MaxFilterPorts},
		{"comms", MaxFilterProcesses},
	} {
		ms, ok := spec.Maps[tt.m]
		if !ok {
			t.Errorf("map %s missing from the connect object", tt.m)
			continue
		}
		if int(ms.MaxEntries) != tt.want {
			t.Errorf("map %s holds %d entries, the exported limit says %d", tt.m, ms.MaxEntries, tt.want)
		}
	}
	if ks := spec.Maps["comms"].KeySize; int(ks) != MaxProcessNameLen+1 {
		t.Errorf("comms key is %d bytes, MaxProcessNameLen+1 = %d", ks, MaxProcessNameLen+1)
	}
}
