package bpf

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// fakeMode is how one mode behaves in fakeAttacher.
type fakeMode struct {
	attachErr error
	proveErr  error // e.g. ErrNotProven: attaches but its hook never runs
	skipped   string
}

// fakeAttacher records what selectMode asked of it and checks that a mode is
// detached before the next one is attached.
type fakeAttacher struct {
	t        *testing.T
	modes    map[Mode]fakeMode
	attached Mode // "" when nothing is attached
	log      []string
}

func (f *fakeAttacher) attach(m Mode) error {
	if f.attached != "" {
		f.t.Errorf("attach %s while %s is still attached", m, f.attached)
	}
	f.log = append(f.log, "attach "+string(m))
	f.attached = m
	return f.modes[m].attachErr
}

func (f *fakeAttacher) prove(m Mode) (time.Duration, string, error) {
	f.log = append(f.log, "prove "+string(m))
	b := f.modes[m]
	if b.proveErr != nil {
		return 0, "", b.proveErr
	}
	if b.skipped != "" {
		return 0, b.skipped, nil
	}
	return time.Millisecond, "", nil
}

func (f *fakeAttacher) detach() {
	f.log = append(f.log, "detach "+string(f.attached))
	f.attached = ""
}

func TestSelectMode(t *testing.T) {
	works := fakeMode{}
	dead := fakeMode{proveErr: ErrNotProven}
	refused := fakeMode{attachErr: errors.New("load programs: operation not permitted")}
	active := lsmState{list: "lockdown,capability,yama,bpf"}
	inactive := lsmState{list: "lockdown,capability,yama,apparmor"}
	unknown := lsmState{err: errors.New("securityfs not mounted")}

	tests := []struct {
		name      string
		requested Mode
		lsm       lsmState
		modes     map[Mode]fakeMode
		want      Mode
		wantLog   string
		wantErr   []string // substrings of the error
		wantIs    error
	}{
		{
			name: "auto, bpf not an active LSM: lsm never loaded, fentry proven",
			lsm:  inactive, requested: ModeAuto,
			modes:   map[Mode]fakeMode{ModeLSM: works, ModeFentry: works},
			want:    ModeFentry,
			wantLog: "attach fentry,prove fentry",
		},
		{
			name: "auto, lsm attaches but its hook never runs: detached, fentry next",
			lsm:  unknown, requested: ModeAuto,
			modes:   map[Mode]fakeMode{ModeLSM: dead, ModeFentry: works},
			want:    ModeFentry,
			wantLog: "attach lsm,prove lsm,detach lsm,attach fentry,prove fentry",
		},
		{
			name: "auto, lsm active and firing",
			lsm:  active, requested: ModeAuto,
			modes:   map[Mode]fakeMode{ModeLSM: works},
			want:    ModeLSM,
			wantLog: "attach lsm,prove lsm",
		},
		{
			name: "auto, only cgroup loads; its proof skipped for a subtree",
			lsm:  active, requested: ModeAuto,
			modes:   map[Mode]fakeMode{ModeLSM: refused, ModeFentry: refused, ModeKprobe: dead, ModeCgroup: {skipped: "subtree"}},
			want:    ModeCgroup,
			wantLog: "attach lsm,detach lsm,attach fentry,detach fentry,attach kprobe,prove kprobe,detach kprobe,attach cgroup,prove cgroup",
		},
		{
			name: "explicit lsm, bpf not an active LSM: the reason, nothing loaded",
			lsm:  inactive, requested: ModeLSM,
			modes:   map[Mode]fakeMode{ModeLSM: works},
			wantErr: []string{"attach mode lsm", "bpf is not an active LSM", "boot with lsm=lockdown,capability,yama,apparmor,bpf", "fentry"},
			wantIs:  ErrLSMInactive,
		},
		{
			name: "explicit fentry that never fires fails at start",
			lsm:  active, requested: ModeFentry,
			modes:   map[Mode]fakeMode{ModeFentry: dead},
			wantLog: "attach fentry,prove fentry,detach fentry",
			wantErr: []string{"attach mode fentry", "did not report the proof connect"},
			wantIs:  ErrNotProven,
		},
		{
			name: "explicit lsm with an unreadable list: the proof decides and says why",
			lsm:  unknown, requested: ModeLSM,
			modes:   map[Mode]fakeMode{ModeLSM: dead},
			wantLog: "attach lsm,prove lsm,detach lsm",
			wantErr: []string{"did not report the proof connect", "active LSM list unreadable"},
			wantIs:  ErrNotProven,
		},
		{
			name: "auto, nothing fires: every mode named",
			lsm:  inactive, requested: ModeAuto,
			modes:   map[Mode]fakeMode{ModeFentry: dead, ModeKprobe: refused, ModeCgroup: dead},
			wantLog: "attach fentry,prove fentry,detach fentry,attach kprobe,detach kprobe,attach cgroup,prove cgroup,detach cgroup",
			wantErr: []string{"lsm: bpf is not an active LSM", "fentry: attached, but", "kprobe: load programs", "cgroup: attached, but"},
			wantIs:  ErrNotProven,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeAttacher{t: t, modes: tt.modes}
			got, attempts, err := selectMode(tt.requested, tt.lsm, f)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("error %v", err)
			}
			for _, s := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), s) {
					t.Errorf("error %v, want it to contain %q", err, s)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			if got != tt.want {
				t.Errorf("mode %q, want %q", got, tt.want)
			}
			if tt.wantLog != "" || err == nil {
				if log := strings.Join(f.log, ","); log != tt.wantLog {
					t.Errorf("calls %s\nwant  %s", log, tt.wantLog)
				}
			}
			if err != nil && f.attached != "" {
				t.Errorf("%s left attached after a failure", f.attached)
			}
			last := attempts[len(attempts)-1]
			if (last.Err == nil) != (err == nil) || (err == nil && last.Mode != got) {
				t.Errorf("last attempt %+v does not match mode %q, err %v", last, got, err)
			}
		})
	}
}

func TestLSMState(t *testing.T) {
	for _, tt := range []struct {
		s        lsmState
		inactive bool
	}{
		{lsmState{list: "lockdown,capability,landlock,bpf"}, false},
		{lsmState{list: "lockdown,capability,yama,apparmor,tomoyo"}, true},
		{lsmState{list: "bpfilter,capability"}, true}, // a whole name, not a prefix
		{lsmState{err: errors.New("unreadable")}, false},
		{lsmState{}, false},
	} {
		if got := tt.s.bpfInactive(); got != tt.inactive {
			t.Errorf("%+v: bpfInactive %v, want %v", tt.s, got, tt.inactive)
		}
	}
}
