package procinfo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// PFKthread is the kernel's PF_KTHREAD task flag (Stat.Flags): the task is a
// kernel thread. Kernel threads live only in the host's (initial) PID
// namespace.
const PFKthread = 0x00200000

// CheckHostPIDView reports, as an error that says why, when procRoot is not
// a procfs of the host's PID namespace, whose pids the kernel's records
// carry: reading procRoot/<pid> there would describe another process, or
// none. selfTGID is this process's tgid as the kernel reported it (the
// attach proof); with it the check is exact: procRoot/self must name that
// pid. Without it (0), pid 2 must be a kernel thread (kthreadd), which no
// other PID namespace has.
func CheckHostPIDView(procRoot string, selfTGID uint32) error {
	if procRoot == "" {
		procRoot = "/proc"
	}
	if selfTGID != 0 {
		self, err := os.Readlink(filepath.Join(procRoot, "self"))
		if err != nil {
			return fmt.Errorf("%s is not a procfs this process appears in (%w): the kernel's records name it pid %d", procRoot, err, selfTGID)
		}
		if self != strconv.FormatUint(uint64(selfTGID), 10) {
			return fmt.Errorf("%s shows a PID namespace in which this process is pid %s, but the kernel's records carry host pids (it is pid %d there)", procRoot, self, selfTGID)
		}
		return nil
	}
	st, err := ReadStat(procRoot, 2)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s has no pid 2 (kthreadd): it is not the host PID namespace's procfs", procRoot)
		}
		return fmt.Errorf("cannot tell whether %s is the host PID namespace's procfs: %w", procRoot, err)
	}
	if st.Flags&PFKthread == 0 {
		return fmt.Errorf("%s shows a PID namespace whose pid 2 (%s) is not a kernel thread: it is not the host's", procRoot, st.Comm)
	}
	return nil
}
