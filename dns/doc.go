// Package dns correlates DNS answers with TCP connects: it parses the DNS
// packets that the kernel captures (see struct tc_dns_event in
// bpf/tcpconnect.h), accepts an answer only when a matching query left the
// same socket, and keeps an IP -> names cache that a connect looks up.
//
// The pieces, each usable on its own:
//
//   - [Parser] decodes one DNS message (a hand-written walk of the header,
//     the first question and the A, AAAA and CNAME answers, checked against
//     miekg/dns by FuzzParseReference) and extracts the CNAME chain from the
//     question name to its A/AAAA records, without allocating.
//   - [Tracker] remembers outstanding queries (id, 5-tuple, question name and
//     the sender's scope) for a bounded time and number, and matches answers
//     to them. An answer that no query asked for is counted and dropped, so a
//     local process cannot fill the cache with names of its choice by sending
//     itself unsolicited answers.
//   - [Cache] maps an IP to the names it was resolved from, per scope
//     (network namespace + cgroup), with TTL expiry, interned name strings
//     (names.go), an IP index (ipindex.go) and LRU eviction that is fair
//     between network namespaces (entries.go), and a [Cache.Lookup] that does
//     not allocate.
//
// Trust boundary: names do not cross network namespaces. A connect gets
// only the names resolved in its own network namespace (loopback, private
// and link-local addresses are different endpoints in each namespace, and a
// container must not choose the names shown on the host's connects). The
// opt-in cross_namespace: public_only lets names from other namespaces name
// public addresses ([IsPublic]) only, after the own namespace's names.
// [Source] tells where a lookup's best name came from. When the cache is
// full, the least recently used entry of the namespace holding the most
// entries is evicted, so that a namespace flooding the cache evicts its own
// names, not those of namespaces below their share.
//   - [Correlator] ties them together behind one entry point,
//     [Correlator.Handle], that takes a decoded kernel record ([Packet]).
//
// None of the types is safe for concurrent use: the receiver reads one ring
// buffer in one goroutine, handles DNS records and connects in kernel order,
// and so needs no locking. Callers that share a Correlator between goroutines
// must serialize calls themselves.
//
// Time: every method takes "now" from the caller. Pass the event's kernel
// timestamp converted to wall time (or any other clock, as long as Handle and
// Lookup use the same one); a name's age is then the exact time between the
// answer and the connect.
//
// NAT: the kernel captures the packets of sockets the application pointed
// at port 53 whatever NAT did to them, and [Tracker] matches an answer to
// its query by socket cookie, id and question, so Docker's 127.0.0.11 and
// DNAT'd service IPs work. DNS over TCP is reassembled per socket
// (stream.go). The cache can be saved and restored across restarts
// (state.go).
//
// Limits: DNS over HTTPS/TLS/QUIC is invisible; a cache hit inside nscd (unix
// socket) or in an application's own resolver cache produces no packet, so a
// connect made from such a cached result finds a name only while the entry
// learned from the earlier answer lives (bounded by max_ttl). A local stub
// resolver on loopback (systemd-resolved, dnsmasq) is seen twice: its
// upstream answer fills the cache in the stub's scope and its loopback answer
// to the client fills it in the client's scope.
package dns
