// SPDX-License-Identifier: Apache-2.0
/*
 * writes: a loopback TCP stream of small writes, for what a per-packet eBPF
 * program (cgroup_skb egress) costs a workload that is not connecting.
 *
 * It listens on 127.0.0.1 (an ephemeral port), connects to itself once,
 * sets TCP_NODELAY on the sender, and one sender thread writes -n writes of
 * -s bytes each while one reader thread reads them into a 64 KiB buffer
 * until it has every byte. With TCP_NODELAY on loopback a small write
 * leaves as a segment of its own (segs_per_write says how far that held:
 * the sender socket's tcpi_segs_out over the writes); the reader's ACKs are
 * egress packets too (its tcpi_segs_out).
 *
 * On loopback the stream does not stay one segment per write: once the
 * congestion window is full the writes coalesce into the tail segment (about
 * ten 64-byte writes a segment here), so the stream is mostly the cost of
 * write(2). With -p (ping-pong) the reader writes every write's bytes back
 * and the sender waits for them before its next write: every write is a
 * segment each way, the worst case for a per-packet program (netperf's
 * TCP_RR shape); rate is then round trips per second.
 *
 * Output, one line on stdout:
 *   rate=WRITES_PER_S writes=N bytes=B seconds=S mb_per_s=M
 *   segs_per_write=X reader_segs=A pingpong=0|1 connects=1 pid=P port=PORT
 * seconds runs from the first write to the reader's last byte.
 *
 * Build: gcc -O2 -pthread -o writes writes.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_segs_out */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_WRITES 100000000ULL
#define MAX_SIZE 65536

struct reader {
	int fd;
	int pingpong;
	long size;
	uint64_t want;
	uint64_t got;
	struct timespec end;
};

static void die(const char *what)
{
	fprintf(stderr, "writes: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void write_all(int fd, const char *p, long size)
{
	long off = 0;

	while (off < size) {
		ssize_t n = write(fd, p + off, (size_t)(size - off));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("write");
		off += n;
	}
}

static void read_exact(int fd, char *p, long size)
{
	long off = 0;

	while (off < size) {
		ssize_t n = read(fd, p + off, (size_t)(size - off));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("read");
		off += n;
	}
}

static void *read_all(void *arg)
{
	struct reader *r = arg;
	static char buf[65536];

	while (r->got < r->want) {
		/* ping-pong: one write's bytes at a time, so each is answered */
		size_t room = r->pingpong ? (size_t)(r->size - (long)(r->got % (uint64_t)r->size)) : sizeof(buf);
		ssize_t n = read(r->fd, buf, room);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("read");
		r->got += (uint64_t)n;
		if (r->pingpong && r->got % (uint64_t)r->size == 0)
			write_all(r->fd, buf, r->size); /* the write's bytes back */
	}
	clock_gettime(CLOCK_MONOTONIC, &r->end);
	return NULL;
}

static uint32_t segs_out(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		die("TCP_INFO");
	return ti.tcpi_segs_out;
}

int main(int argc, char **argv)
{
	unsigned long long writes = 1000000;
	long size = 64;
	int opt, one = 1, pingpong = 0;

	while ((opt = getopt(argc, argv, "n:s:p")) != -1) {
		switch (opt) {
		case 'n':
			writes = strtoull(optarg, NULL, 10);
			break;
		case 's':
			size = strtol(optarg, NULL, 10);
			break;
		case 'p':
			pingpong = 1;
			break;
		default:
			fprintf(stderr, "usage: %s [-n writes] [-s bytes per write] [-p]\n", argv[0]);
			return 2;
		}
	}
	if (writes < 1 || writes > MAX_WRITES || size < 1 || size > MAX_SIZE) {
		fprintf(stderr, "writes: -n in [1, %llu], -s in [1, %d]\n", MAX_WRITES, MAX_SIZE);
		return 2;
	}

	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t salen = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);

	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &salen) < 0)
		die("listen");
	int cfd = socket(AF_INET, SOCK_STREAM, 0);

	if (cfd < 0 || connect(cfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	if (setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		die("TCP_NODELAY");
	int afd = accept(lfd, NULL, NULL);

	if (afd < 0)
		die("accept");
	if (setsockopt(afd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		die("TCP_NODELAY");

	char *msg = calloc(1, (size_t)size);
	char *back = calloc(1, (size_t)size);
	struct reader r = {.fd = afd, .pingpong = pingpong, .size = size, .want = writes * (uint64_t)size};
	pthread_t th;
	struct timespec start;
	uint32_t segs0 = segs_out(cfd), acks0 = segs_out(afd);

	if (!msg || !back)
		die("calloc");
	clock_gettime(CLOCK_MONOTONIC, &start);
	if (pthread_create(&th, NULL, read_all, &r) != 0)
		die("pthread_create");
	for (unsigned long long i = 0; i < writes; i++) {
		write_all(cfd, msg, size);
		if (pingpong)
			read_exact(cfd, back, size);
	}
	pthread_join(th, NULL);
	uint32_t segs = segs_out(cfd) - segs0, acks = segs_out(afd) - acks0;
	double secs = (double)(r.end.tv_sec - start.tv_sec) + (double)(r.end.tv_nsec - start.tv_nsec) / 1e9;

	printf("rate=%.0f writes=%llu bytes=%llu seconds=%.3f mb_per_s=%.1f segs_per_write=%.3f reader_segs=%u pingpong=%d connects=1 pid=%d port=%d\n",
	       (double)writes / secs, writes, (unsigned long long)r.want, secs, (double)r.want / secs / 1e6,
	       (double)segs / (double)writes, acks, pingpong, getpid(), ntohs(sa.sin_port));
	close(cfd);
	close(afd);
	close(lfd);
	return 0;
}
