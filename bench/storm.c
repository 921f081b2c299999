// SPDX-License-Identifier: Apache-2.0
/*
 * storm: a loopback TCP connect storm.
 *
 * It starts its own listener (one or more accept threads that accept and close)
 * and N client threads that each loop socket() + setsockopt(SO_LINGER 0) +
 * connect() + close(), bounded by a duration and by a total count. Every
 * connect goes to a loopback address (127.0.0.0/8).
 *
 * Latency samples: with -k K, every K-th connect of a thread goes to a unique
 * loopback address 127.1.0.0 + id (the listener is then bound to 0.0.0.0 so
 * that it accepts on all of 127/8; nothing but loopback is ever connected to),
 * and "id realtime_ns" is written to the -o file, CLOCK_REALTIME read just
 * before connect(). A record whose destination is that address gives the
 * connect-to-record delay without any source port (the connect hook runs
 * before the kernel picks one).
 *
 * Unique destinations: with -u N, the connects that are not samples go to
 * 127.200.0.0 + (i mod N), i counting the connects of all threads, instead
 * of 127.0.0.1: N distinct destinations in turn (N <= 2^19, so they stay in
 * 127.200.0.0/13, clear of the samples' 127.1.0.0 + id below 127.129/16).
 * The listener is bound to 0.0.0.0 then too.
 *
 * Output, one line on stdout:
 *   connects=N errors=E seconds=S rate=R pid=P port=PORT samples=M threads=T
 * connects counts connect() calls (each one is a connect attempt that a
 * monitor must report); errors counts the calls that failed.
 *
 * Build: gcc -O2 -pthread -o storm storm.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64
#define MAX_SECONDS 600
#define MAX_SAMPLES (1u << 23) /* ids 127.1.0.0 + [0, 2^23): stays inside 127/8 */
#define MAX_UNIQUE (1u << 19)  /* 127.200.0.0 + [0, 2^19): 127.200.0.0/13 */
#define UNIQUE_BASE 0x7fc80000u /* 127.200.0.0 */

struct sample {
	uint32_t id;
	uint64_t ns;
};

struct client {
	pthread_t th;
	uint64_t connects;
	uint64_t errors;
	struct sample *samples;
	size_t nsamples, capsamples;
};

static atomic_int stop;
static atomic_ullong issued;    /* connect slots handed out, for -n */
static atomic_uint next_sample; /* next sample id */
static uint64_t max_count;      /* 0: no bound by count */
static unsigned sample_every;   /* 0: no samples */
static unsigned unique;         /* 0: every connect to 127.0.0.1 */
static atomic_uint next_unique; /* next unique destination */
static int listen_fd;
static uint16_t listen_port;

static uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *acceptor(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);

		if (fd >= 0) {
			close(fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			usleep(1000);
			continue;
		}
		break; /* EINVAL after shutdown(): done */
	}
	return NULL;
}

static int add_sample(struct client *c, uint32_t id, uint64_t ns)
{
	if (c->nsamples == c->capsamples) {
		size_t cap = c->capsamples ? c->capsamples * 2 : 4096;
		struct sample *s = realloc(c->samples, cap * sizeof(*s));

		if (!s)
			return -1;
		c->samples = s;
		c->capsamples = cap;
	}
	c->samples[c->nsamples].id = id;
	c->samples[c->nsamples].ns = ns;
	c->nsamples++;
	return 0;
}

static void *client(void *arg)
{
	struct client *c = arg;
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	struct sockaddr_in main_dst = {
		.sin_family = AF_INET,
		.sin_port = htons(listen_port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	uint64_t n = 0;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		struct sockaddr_in dst = main_dst;
		uint64_t ts = 0;
		uint32_t id = 0;
		int sampled = 0;
		int fd;

		if (max_count && atomic_fetch_add_explicit(&issued, 1, memory_order_relaxed) >= max_count)
			break;
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			c->errors++;
			usleep(100);
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		if (unique)
			dst.sin_addr.s_addr = htonl(UNIQUE_BASE + atomic_fetch_add_explicit(&next_unique, 1, memory_order_relaxed) % unique);
		if (sample_every && n % sample_every == 0) {
			id = atomic_fetch_add_explicit(&next_sample, 1, memory_order_relaxed);
			if (id < MAX_SAMPLES) {
				sampled = 1;
				dst.sin_addr.s_addr = htonl(0x7f010000u + id);
			}
		}
		if (sampled)
			ts = now_ns(CLOCK_REALTIME);
		if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) != 0)
			c->errors++;
		c->connects++;
		if (sampled && add_sample(c, id, ts) != 0)
			sample_every = 0;
		close(fd);
		n++;
	}
	return NULL;
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [-t threads] [-d seconds] [-n total_connects] [-A accept_threads]\n"
		"          [-k sample_every] [-o sample_file] [-u unique_destinations]\n"
		"  -t  client threads (1..%d, default 2)\n"
		"  -d  duration bound in seconds (1..%d, default 5)\n"
		"  -n  total connect bound over all threads (0: none, default 0)\n"
		"  -A  accept threads (1..8, default 1)\n"
		"  -k  every k-th connect of a thread is a timed sample (0: none)\n"
		"  -o  file for the samples: one \"id realtime_ns\" a line\n"
		"  -u  cycle the destination over N loopback addresses 127.200.0.0 + i (1..%u; 0: 127.0.0.1 only)\n",
		prog, MAX_THREADS, MAX_SECONDS, MAX_UNIQUE);
	exit(2);
}

int main(int argc, char **argv)
{
	int threads = 2, accepters = 1, opt;
	double seconds = 5;
	const char *sample_file = NULL;
	struct client *cl;
	pthread_t acc[8];
	struct sockaddr_in la = { .sin_family = AF_INET };
	socklen_t alen = sizeof(la);
	uint64_t t0, t1, connects = 0, errors = 0, samples = 0;
	int one = 1;

	while ((opt = getopt(argc, argv, "t:d:n:A:k:o:u:h")) != -1) {
		switch (opt) {
		case 't': threads = atoi(optarg); break;
		case 'd': seconds = atof(optarg); break;
		case 'n': max_count = strtoull(optarg, NULL, 10); break;
		case 'A': accepters = atoi(optarg); break;
		case 'k': sample_every = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'o': sample_file = optarg; break;
		case 'u': unique = (unsigned)strtoul(optarg, NULL, 10); break;
		default: usage(argv[0]);
		}
	}
	if (threads < 1 || threads > MAX_THREADS || accepters < 1 || accepters > 8 ||
	    !(seconds > 0 && seconds <= MAX_SECONDS) || (sample_every && !sample_file) || unique > MAX_UNIQUE)
		usage(argv[0]);

	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listen_fd < 0) {
		perror("socket");
		return 1;
	}
	setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* Samples and unique destinations are other 127/8 addresses: listen on
	 * every address then (only loopback is dialled). */
	la.sin_addr.s_addr = htonl(sample_every || unique ? INADDR_ANY : INADDR_LOOPBACK);
	if (bind(listen_fd, (struct sockaddr *)&la, sizeof(la)) != 0 || listen(listen_fd, 4096) != 0 ||
	    getsockname(listen_fd, (struct sockaddr *)&la, &alen) != 0) {
		perror("listen");
		return 1;
	}
	listen_port = ntohs(la.sin_port);
	for (int i = 0; i < accepters; i++)
		if (pthread_create(&acc[i], NULL, acceptor, NULL) != 0) {
			perror("pthread_create");
			return 1;
		}

	cl = calloc((size_t)threads, sizeof(*cl));
	if (!cl)
		return 1;
	t0 = now_ns(CLOCK_MONOTONIC);
	for (int i = 0; i < threads; i++)
		if (pthread_create(&cl[i].th, NULL, client, &cl[i]) != 0) {
			perror("pthread_create");
			return 1;
		}
	/* Bounded by time (and by count inside the clients). */
	{
		uint64_t end = t0 + (uint64_t)(seconds * 1e9);
		struct timespec tick = { 0, 10 * 1000 * 1000 };

		while (now_ns(CLOCK_MONOTONIC) < end) {
			if (max_count && atomic_load(&issued) >= max_count)
				break;
			nanosleep(&tick, NULL);
		}
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < threads; i++) {
		pthread_join(cl[i].th, NULL);
		connects += cl[i].connects;
		errors += cl[i].errors;
	}
	t1 = now_ns(CLOCK_MONOTONIC);
	shutdown(listen_fd, SHUT_RDWR);
	for (int i = 0; i < accepters; i++)
		pthread_join(acc[i], NULL);
	close(listen_fd);

	if (sample_file) {
		FILE *f = fopen(sample_file, "w");

		if (!f) {
			perror(sample_file);
			return 1;
		}
		for (int i = 0; i < threads; i++)
			for (size_t j = 0; j < cl[i].nsamples; j++) {
				fprintf(f, "%u %llu\n", cl[i].samples[j].id,
					(unsigned long long)cl[i].samples[j].ns);
				samples++;
			}
		if (fclose(f) != 0) {
			perror(sample_file);
			return 1;
		}
	}
	{
		double secs = (double)(t1 - t0) / 1e9;

		printf("connects=%llu errors=%llu seconds=%.3f rate=%.0f pid=%d port=%u samples=%llu threads=%d unique=%u\n",
		       (unsigned long long)connects, (unsigned long long)errors, secs,
		       secs > 0 ? (double)connects / secs : 0.0, (int)getpid(), listen_port,
		       (unsigned long long)samples, threads, unique);
	}
	for (int i = 0; i < threads; i++)
		free(cl[i].samples);
	free(cl);
	return 0;
}
