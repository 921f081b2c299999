package bpf

// Sizes of the kernel's filter maps in connect.bpf.c. Config validation checks
// the user's lists against them, so that a list too long fails in validate
// with its field's name instead of at start with the kernel's "no space left
// on device"; a test compares them with the loaded object's maps.
const (
	// MaxFilterCIDRs is how many distinct prefixes each CIDR trie
	// (include_cidr, exclude_cidr) holds.
	MaxFilterCIDRs = 1024
	// MaxFilterPorts is how many distinct ports the include and exclude
	// port lists hold together (one map, "ports").
	MaxFilterPorts = 1024
	// MaxFilterProcesses is how many distinct process names the include and
	// exclude lists hold together (one map, "comms").
	MaxFilterProcesses = 1024
	// MaxProcessNameLen is the longest process name a filter can match: the
	// kernel's comm (TASK_COMM_LEN 16, with its NUL).
	MaxProcessNameLen = commLen - 1
)
