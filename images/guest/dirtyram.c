/*
 * dirtyram NPAGES BURST PERIOD_MS
 *
 * Guest workload of the live-migration procedure (seed: "./dirtyram 409600 2048 50").
 *
 * Allocates NPAGES pages and, every PERIOD_MS milliseconds, rewrites one burst of
 * about BURST pages.  Burst b rewrites the pages o, o+S, o+2S, ... with S = NPAGES/BURST
 * (the stride) and o = b mod S, so every page is rewritten once per S bursts.
 *
 * Every write changes the page: each page carries a stamp (magic, page index, burst
 * number, check word) at its head and a copy at its tail.  Before rewriting a page the
 * program checks that the stamp is exactly the one it wrote S bursts earlier (or that the
 * page was never written, during the first pass).  After a live migration a page whose
 * newest contents did not reach the destination shows an older stamp: a "stale" page, i.e.
 * a dirty page that the hypervisor's dirty log lost.
 *
 * Output, line-buffered on stdout:
 *   dirtyram: start pages=N burst=M period_ms=P stride=S page_size=B region=0xADDR
 *   dirtyram: bursts=N written=N checked=N stale=N passes=N overruns=N [stale_pages=i,j,...]
 *     (once per second; the counters are cumulative, stale_pages lists the pages found
 *      stale since the previous line)
 *   dirtyram: summary bursts=N written=N checked=N stale=N passes=N overruns=N result=PASS|FAIL
 *     (on SIGTERM or SIGINT; exit status 0 for PASS, 1 for FAIL)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define STAMP_MAGIC 0x314d52595452494dULL /* arbitrary, never zero */
#define CHECK_K1 0x9e3779b97f4a7c15ULL
#define CHECK_K2 0xc2b2ae3d27d4eb4fULL
#define MAX_LISTED 32

struct stamp {
	uint64_t magic;
	uint64_t page;
	uint64_t burst;
	uint64_t check;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static uint64_t check_word(uint64_t page, uint64_t burst)
{
	return STAMP_MAGIC ^ (page * CHECK_K1) ^ (burst * CHECK_K2);
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || *s == '\0' || *end != '\0' || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct counters {
	uint64_t bursts, written, checked, stale, overruns;
	uint64_t listed[MAX_LISTED];
	unsigned nlisted, unlisted;
};

static void print_status(const struct counters *c, uint64_t stride)
{
	printf("dirtyram: bursts=%" PRIu64 " written=%" PRIu64 " checked=%" PRIu64
	       " stale=%" PRIu64 " passes=%" PRIu64 " overruns=%" PRIu64,
	       c->bursts, c->written, c->checked, c->stale, c->bursts / stride, c->overruns);
	if (c->nlisted) {
		printf(" stale_pages=");
		for (unsigned i = 0; i < c->nlisted; i++)
			printf("%s%" PRIu64, i ? "," : "", c->listed[i]);
		if (c->unlisted)
			printf(",+%u", c->unlisted);
	}
	printf("\n");
}

/* Returns 1 when the page does not hold the stamp it must hold before burst b. */
static int page_is_stale(const unsigned char *p, size_t page_size, uint64_t index,
			 uint64_t b, uint64_t stride)
{
	const struct stamp *head = (const struct stamp *)p;
	const struct stamp *tail = (const struct stamp *)(p + page_size - sizeof(struct stamp));

	if (b < stride) /* first pass: the page has never been written */
		return head->magic != 0 || tail->magic != 0;
	uint64_t want = b - stride;
	return head->magic != STAMP_MAGIC || head->page != index || head->burst != want ||
	       head->check != check_word(index, want) || memcmp(head, tail, sizeof(*head)) != 0;
}

static void write_stamp(unsigned char *p, size_t page_size, uint64_t index, uint64_t b)
{
	struct stamp s = { STAMP_MAGIC, index, b, check_word(index, b) };
	memcpy(p, &s, sizeof(s));
	memcpy(p + page_size - sizeof(s), &s, sizeof(s));
}

int main(int argc, char **argv)
{
	uint64_t npages, burst, period_ms;

	if (argc != 4 || parse_u64(argv[1], &npages) || parse_u64(argv[2], &burst) ||
	    parse_u64(argv[3], &period_ms)) {
		fprintf(stderr, "usage: dirtyram NPAGES BURST PERIOD_MS\n");
		return 2;
	}
	if (npages == 0 || burst == 0 || burst > npages) {
		fprintf(stderr, "dirtyram: need 0 < BURST <= NPAGES (got NPAGES=%" PRIu64
			" BURST=%" PRIu64 ")\n", npages, burst);
		return 2;
	}
	size_t page_size = (size_t)sysconf(_SC_PAGESIZE);
	uint64_t stride = npages / burst;
	size_t len = (size_t)npages * page_size;
	if (len / page_size != npages) {
		fprintf(stderr, "dirtyram: %" PRIu64 " pages do not fit the address space\n", npages);
		return 2;
	}
	unsigned char *region = mmap(NULL, len, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED) {
		fprintf(stderr, "dirtyram: cannot map %zu bytes: %s\n", len, strerror(errno));
		return 2;
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);

	printf("dirtyram: start pages=%" PRIu64 " burst=%" PRIu64 " period_ms=%" PRIu64
	       " stride=%" PRIu64 " page_size=%zu region=%p\n",
	       npages, burst, period_ms, stride, page_size, (void *)region);

	struct counters c;
	memset(&c, 0, sizeof(c));
	double start = now_seconds();
	double next_status = start + 1.0;

	for (uint64_t b = 0; !stop_requested; b++) {
		for (uint64_t i = b % stride; i < npages; i += stride) {
			unsigned char *p = region + i * page_size;
			if (b >= stride)
				c.checked++;
			if (page_is_stale(p, page_size, i, b, stride)) {
				c.stale++;
				if (c.nlisted < MAX_LISTED)
					c.listed[c.nlisted++] = i;
				else
					c.unlisted++;
			}
			write_stamp(p, page_size, i, b);
			c.written++;
		}
		c.bursts = b + 1;

		double now = now_seconds();
		if (now >= next_status) {
			print_status(&c, stride);
			c.nlisted = c.unlisted = 0;
			while (next_status <= now)
				next_status += 1.0;
		}
		double due = start + (double)(b + 1) * (double)period_ms / 1000.0;
		if (now > due + (double)period_ms / 1000.0) {
			/* late by more than a period (slow burst, or the VM was paused):
			 * count it and restart the schedule from now instead of catching up */
			c.overruns++;
			start = now - (double)(b + 1) * (double)period_ms / 1000.0;
		} else if (due > now) {
			struct timespec ts;
			ts.tv_sec = (time_t)due;
			ts.tv_nsec = (long)((due - (double)ts.tv_sec) * 1e9);
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR &&
			       !stop_requested)
				;
		}
	}
	if (c.nlisted)
		print_status(&c, stride);
	printf("dirtyram: summary bursts=%" PRIu64 " written=%" PRIu64 " checked=%" PRIu64
	       " stale=%" PRIu64 " passes=%" PRIu64 " overruns=%" PRIu64 " result=%s\n",
	       c.bursts, c.written, c.checked, c.stale, c.bursts / stride, c.overruns,
	       c.stale ? "FAIL" : "PASS");
	return c.stale ? 1 : 0;
}
