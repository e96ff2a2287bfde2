/*
 * tbload seed NPAGES BURST PERIOD_MS   [options]
 * tbload hot NPAGES                    [options]
 * tbload random NPAGES [--seed N] [--period-us U] [options]
 * tbload wide NPAGES [--period-ms P]  [options]
 * options: [--id ID] [--cpu N] [--duration S]
 *
 * The guest loads of the live-migration procedure: they keep rewriting memory while the
 * VM migrates and check, in the guest, that every page still holds what they wrote.
 *
 *   seed    the seed's "dirtyram 409600 2048 50": every PERIOD_MS ms one burst rewrites
 *           the pages o, o+S, o+2S, ... with S = NPAGES/BURST (the stride) and
 *           o = b mod S for burst b, so every page is rewritten once per S bursts (a pass).
 *           A burst that starts more than a period late is an overrun (the schedule then
 *           restarts from now instead of catching up).
 *   hot     NPAGES pages (e.g. 256) rewritten in a loop that never sleeps; one iteration
 *           rewrites every page once (a pass).  A small, always-dirty set: what made
 *           QEMU 7.2 on armv7 -smp 2 lose pages.
 *   random  one random page at a time (splitmix64 of --seed, printed at start), as KVM's
 *           selftest dirty_log_test; --period-us sleeps between writes (default 0).  A
 *           private shadow array holds the counter last written to each page.  A pass is
 *           NPAGES writes.
 *   wide    sequential sweeps over NPAGES pages, one sweep a pass; --period-ms sleeps
 *           between sweeps (default 0).
 *
 * Every write changes the page: it stamps the page's head and tail with the same 32-byte
 * stamp (magic, page index, counter, check word).  The counter is the burst number (seed),
 * the iteration (hot), the sequence number of the write, from 1 (random) or the sweep
 * (wide).  Before rewriting a page the program checks that the page holds exactly the stamp
 * it wrote there last time (or nothing, if it never wrote it).  After a live migration a
 * page whose newest contents did not reach the destination shows an older stamp: a "stale"
 * page, i.e. a dirty page that the hypervisor's dirty log lost.  The magic tells the loads
 * apart in a RAM dump (little-endian, it reads as ASCII):
 *   seed   0x314d52595452494d "MIRTYRM1" (dirtyram's)    hot   0x31544f48444c4254 "TBLDHOT1"
 *   random 0x31444e52444c4254 "TBLDRND1"                 wide  0x31444957444c4254 "TBLDWID1"
 *
 * The memory is private anonymous, mlock'ed where the kernel allows it (best effort).
 * --cpu pins the process to that CPU (exit 2 if it cannot); --duration ends the run after
 * S seconds; otherwise SIGTERM or SIGINT ends it.
 *
 * Output, line-buffered on stdout (ID defaults to the mode):
 *   tbload[ID]: start mode=M pages=N ... cpu=N|any mlock=yes|no page_size=B region=0xADDR
 *   tbload[ID]: mode=M written=N checked=N stale=N passes=N overruns=N [stale_pages=i,j,...,+K]
 *     (once a second and whenever a pass completes, at most 20 lines a second; counters
 *      are cumulative; stale_pages lists at most 32 pages found stale since the previous
 *      line, +K counts the others)
 *   tbload[ID]: summary mode=M written=N checked=N stale=N passes=N overruns=N result=PASS|FAIL
 *     (at the end; exit status 0 for PASS, 1 for FAIL, 2 for a usage error)
 *
 * Invoked as "dirtyram NPAGES BURST PERIOD_MS" it runs the seed mode with dirtyram's own
 * output format, which the migration procedure and its parsers know:
 *   dirtyram: start pages=N burst=M period_ms=P stride=S page_size=B region=0xADDR
 *   dirtyram: bursts=N written=N checked=N stale=N passes=N overruns=N [stale_pages=...]
 *   dirtyram: summary bursts=N written=N checked=N stale=N passes=N overruns=N result=PASS|FAIL
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MAGIC_SEED 0x314d52595452494dULL   /* "MIRTYRM1", dirtyram's */
#define MAGIC_HOT 0x31544f48444c4254ULL    /* "TBLDHOT1" */
#define MAGIC_RANDOM 0x31444e52444c4254ULL /* "TBLDRND1" */
#define MAGIC_WIDE 0x31444957444c4254ULL   /* "TBLDWID1" */
#define CHECK_K1 0x9e3779b97f4a7c15ULL
#define CHECK_K2 0xc2b2ae3d27d4eb4fULL
#define MAX_LISTED 32
#define MAX_ID 32
#define LINE_GAP 0.05 /* seconds between two status lines, at least: 20 lines/s */

struct stamp {
	uint64_t magic;
	uint64_t page;
	uint64_t counter;
	uint64_t check;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* One running load: its memory, its counters and where its output goes. */
struct load {
	const char *mode;
	int legacy;	/* invoked as dirtyram: dirtyram's output format */
	char prefix[MAX_ID + 16];
	uint64_t magic;
	unsigned char *region;
	size_t page_size;
	uint64_t npages;
	double end;	/* when --duration ends, 0 for never */
	double last_line;
	int pass_pending;
	uint64_t bursts, written, checked, stale, passes, overruns;
	uint64_t listed[MAX_LISTED];
	unsigned nlisted, unlisted;
};

static const char *prog = "tbload";

static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	return 2;
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

/* Sleeps until the monotonic time t, the end of --duration or a signal. */
static void sleep_until(const struct load *l, double t)
{
	if (l->end > 0 && t > l->end)
		t = l->end;
	struct timespec ts;
	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR &&
	       !stop_requested)
		;
}

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t check_word(uint64_t magic, uint64_t page, uint64_t counter)
{
	return magic ^ (page * CHECK_K1) ^ (counter * CHECK_K2);
}

static void print_counters(const struct load *l, const char *what)
{
	if (l->legacy)
		printf("%s %sbursts=%" PRIu64, l->prefix, what, l->bursts);
	else
		printf("%s %smode=%s", l->prefix, what, l->mode);
	printf(" written=%" PRIu64 " checked=%" PRIu64 " stale=%" PRIu64 " passes=%" PRIu64
	       " overruns=%" PRIu64, l->written, l->checked, l->stale, l->passes, l->overruns);
}

static void print_status(struct load *l)
{
	print_counters(l, "");
	if (l->nlisted) {
		printf(" stale_pages=");
		for (unsigned i = 0; i < l->nlisted; i++)
			printf("%s%" PRIu64, i ? "," : "", l->listed[i]);
		if (l->unlisted)
			printf(",+%u", l->unlisted);
	}
	printf("\n");
	l->nlisted = l->unlisted = 0;
	l->pass_pending = 0;
}

/* Prints a status line when one is due; returns nonzero when the load must stop. */
static int tick(struct load *l)
{
	double now = now_seconds();
	if (now >= l->last_line + 1.0 || (l->pass_pending && now >= l->last_line + LINE_GAP)) {
		print_status(l);
		l->last_line = now;
	}
	return stop_requested || (l->end > 0 && now >= l->end);
}

static void pass_done(struct load *l)
{
	l->passes++;
	l->pass_pending = 1;
}

/*
 * Rewrites page i with the stamp of counter, after checking that it holds the stamp of
 * counter want (or, if fresh, that it was never written).
 */
static void rewrite_page(struct load *l, uint64_t i, int fresh, uint64_t want, uint64_t counter)
{
	unsigned char *p = l->region + (size_t)i * l->page_size;
	unsigned char *tailp = p + l->page_size - sizeof(struct stamp);
	struct stamp head, tail;
	int stale;

	/* the page may have changed behind the program's back: that is what it looks for */
	__asm__ __volatile__("" : : : "memory");
	memcpy(&head, p, sizeof(head));
	memcpy(&tail, tailp, sizeof(tail));
	if (fresh) {
		stale = head.magic != 0 || tail.magic != 0;
	} else {
		l->checked++;
		stale = head.magic != l->magic || head.page != i || head.counter != want ||
			head.check != check_word(l->magic, i, want) ||
			memcmp(&head, &tail, sizeof(head)) != 0;
	}
	if (stale) {
		l->stale++;
		if (l->nlisted < MAX_LISTED)
			l->listed[l->nlisted++] = i;
		else
			l->unlisted++;
	}
	struct stamp s = { l->magic, i, counter, check_word(l->magic, i, counter) };
	memcpy(p, &s, sizeof(s));
	memcpy(tailp, &s, sizeof(s));
	l->written++;
}

static void run_seed(struct load *l, uint64_t burst, uint64_t period_ms)
{
	uint64_t stride = l->npages / burst;
	double period = (double)period_ms / 1000.0;
	double start = now_seconds();

	for (uint64_t b = 0;; b++) {
		for (uint64_t i = b % stride; i < l->npages; i += stride)
			rewrite_page(l, i, b < stride, b - stride, b);
		l->bursts = b + 1;
		if (l->bursts % stride == 0)
			pass_done(l);
		if (tick(l))
			return;
		double now = now_seconds();
		double due = start + (double)(b + 1) * period;
		if (now > due + period) {
			/* late by more than a period (slow burst, or the VM was paused):
			 * count it and restart the schedule from now instead of catching up */
			l->overruns++;
			start = now - (double)(b + 1) * period;
		} else if (due > now) {
			sleep_until(l, due);
		}
	}
}

static void run_hot(struct load *l)
{
	for (uint64_t it = 0;; it++) {
		for (uint64_t i = 0; i < l->npages; i++)
			rewrite_page(l, i, it == 0, it - 1, it);
		pass_done(l);
		if (tick(l))
			return;
	}
}

static void run_random(struct load *l, uint64_t *shadow, uint64_t seed, uint64_t period_us)
{
	for (uint64_t w = 1;; w++) {
		uint64_t i = splitmix64(&seed) % l->npages;
		rewrite_page(l, i, shadow[i] == 0, shadow[i], w);
		shadow[i] = w;
		int pass = w % l->npages == 0;
		if (pass)
			pass_done(l);
		if ((pass || period_us || (w & 63) == 0) && tick(l))
			return;
		if (period_us)
			sleep_until(l, now_seconds() + (double)period_us / 1e6);
	}
}

static void run_wide(struct load *l, uint64_t period_ms)
{
	for (uint64_t s = 0;; s++) {
		for (uint64_t i = 0; i < l->npages; i++) {
			rewrite_page(l, i, s == 0, s - 1, s);
			if ((i & 63) == 63 && tick(l))
				return;
		}
		pass_done(l);
		if (tick(l))
			return;
		if (period_ms)
			sleep_until(l, now_seconds() + (double)period_ms / 1000.0);
	}
}

static const char *mode_usage(const char *mode)
{
	if (!strcmp(mode, "seed"))
		return "seed NPAGES BURST PERIOD_MS";
	if (!strcmp(mode, "hot"))
		return "hot NPAGES";
	if (!strcmp(mode, "random"))
		return "random NPAGES [--seed N] [--period-us U]";
	return "wide NPAGES [--period-ms P]";
}

static int usage(int legacy, const char *args)
{
	if (legacy)
		fprintf(stderr, "usage: dirtyram NPAGES BURST PERIOD_MS [--cpu N] [--duration S]\n");
	else
		fprintf(stderr, "usage: tbload %s [--id ID] [--cpu N] [--duration S]\n", args);
	return 2;
}

int main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/');
	int legacy = !strcmp(base ? base + 1 : argv[0], "dirtyram");
	const char *mode = "seed";
	const char *id = NULL;
	uint64_t pos[3], cpu = 0, seed = 0, period_us = 0, period_ms = 0;
	int npos = 0, want = 3, pin = 0, have_seed = 0;
	double duration = 0;
	int first = 1;

	if (legacy) {
		prog = "dirtyram";
	} else {
		if (argc < 2 || (strcmp(argv[1], "seed") && strcmp(argv[1], "hot") &&
				 strcmp(argv[1], "random") && strcmp(argv[1], "wide")))
			return usage(0, "seed|hot|random|wide NPAGES ...");
		mode = argv[1];
		want = strcmp(mode, "seed") ? 1 : 3;
		first = 2;
	}
	for (int i = first; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "--", 2)) {
			if (npos == want)
				return usage_error("unexpected argument %s (usage: %s %s)", a, prog,
						   legacy ? "NPAGES BURST PERIOD_MS" : mode_usage(mode));
			if (parse_u64(a, &pos[npos]))
				return usage_error("%s is not a number (usage: %s %s)", a, prog,
						   legacy ? "NPAGES BURST PERIOD_MS" : mode_usage(mode));
			npos++;
			continue;
		}
		if (i + 1 == argc)
			return usage_error("%s needs a value", a);
		const char *v = argv[++i];
		char *end;
		if (!strcmp(a, "--id") && !legacy) {
			id = v;
			if (!*id || strlen(id) > MAX_ID || strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				"abcdefghijklmnopqrstuvwxyz0123456789_.-") != strlen(id))
				return usage_error("--id %s: use up to %d letters, digits, '_', '.', '-'",
						   v, MAX_ID);
		} else if (!strcmp(a, "--cpu")) {
			if (parse_u64(v, &cpu))
				return usage_error("--cpu %s is not a CPU number", v);
			pin = 1;
		} else if (!strcmp(a, "--duration")) {
			duration = strtod(v, &end);
			if (*end || end == v || !(duration > 0) || !isfinite(duration))
				return usage_error("--duration %s is not a positive number of seconds", v);
		} else if (!strcmp(a, "--seed") && !strcmp(mode, "random")) {
			if (parse_u64(v, &seed))
				return usage_error("--seed %s is not a number", v);
			have_seed = 1;
		} else if (!strcmp(a, "--period-us") && !strcmp(mode, "random")) {
			if (parse_u64(v, &period_us))
				return usage_error("--period-us %s is not a number", v);
		} else if (!strcmp(a, "--period-ms") && !strcmp(mode, "wide")) {
			if (parse_u64(v, &period_ms))
				return usage_error("--period-ms %s is not a number", v);
		} else {
			return usage_error("unknown option %s for mode %s", a, mode);
		}
	}
	if (npos != want)
		return usage(legacy, mode_usage(mode));

	uint64_t npages = pos[0], burst = pos[1];
	if (npages == 0)
		return usage_error("NPAGES must be at least 1");
	if (want == 3 && (burst == 0 || burst > npages))
		return usage_error("need 0 < BURST <= NPAGES (got NPAGES=%" PRIu64 " BURST=%" PRIu64 ")",
				   npages, burst);
	size_t page_size = (size_t)sysconf(_SC_PAGESIZE);
	size_t len = (size_t)npages * page_size;
	if (len / page_size != npages)
		return usage_error("%" PRIu64 " pages do not fit the address space", npages);

	if (pin) {
		cpu_set_t set;
		CPU_ZERO(&set);
		if (cpu >= CPU_SETSIZE)
			return usage_error("cannot pin to CPU %" PRIu64 ": no such CPU", cpu);
		CPU_SET((int)cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			return usage_error("cannot pin to CPU %" PRIu64 ": %s", cpu, strerror(errno));
	}

	unsigned char *region = mmap(NULL, len, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		return usage_error("cannot map %zu bytes: %s", len, strerror(errno));
	uint64_t *shadow = NULL;
	if (!strcmp(mode, "random")) {
		shadow = calloc((size_t)npages, sizeof(*shadow));
		if (!shadow)
			return usage_error("cannot allocate the shadow of %" PRIu64 " pages", npages);
		if (!have_seed)
			seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	}
	/* lock (and so populate) everything now; without the privilege, run unlocked */
	int locked = mlockall(MCL_CURRENT | MCL_FUTURE) == 0;

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);

	struct load l;
	memset(&l, 0, sizeof(l));
	l.mode = mode;
	l.legacy = legacy;
	l.region = region;
	l.page_size = page_size;
	l.npages = npages;
	if (legacy)
		snprintf(l.prefix, sizeof(l.prefix), "dirtyram:");
	else
		snprintf(l.prefix, sizeof(l.prefix), "tbload[%s]:", id ? id : mode);

	if (legacy) {
		printf("dirtyram: start pages=%" PRIu64 " burst=%" PRIu64 " period_ms=%" PRIu64
		       " stride=%" PRIu64 " page_size=%zu region=%p\n",
		       npages, burst, pos[2], npages / burst, page_size, (void *)region);
	} else {
		printf("%s start mode=%s pages=%" PRIu64, l.prefix, mode, npages);
		if (want == 3)
			printf(" burst=%" PRIu64 " period_ms=%" PRIu64 " stride=%" PRIu64, burst,
			       pos[2], npages / burst);
		else if (shadow)
			printf(" seed=%" PRIu64 " period_us=%" PRIu64, seed, period_us);
		else if (!strcmp(mode, "wide"))
			printf(" period_ms=%" PRIu64, period_ms);
		if (pin)
			printf(" cpu=%" PRIu64, cpu);
		else
			printf(" cpu=any");
		printf(" mlock=%s page_size=%zu region=0x%" PRIxPTR "\n", locked ? "yes" : "no",
		       page_size, (uintptr_t)region);
	}

	l.last_line = now_seconds();
	if (duration > 0)
		l.end = l.last_line + duration;
	if (!strcmp(mode, "seed")) {
		l.magic = MAGIC_SEED;
		run_seed(&l, burst, pos[2]);
	} else if (!strcmp(mode, "hot")) {
		l.magic = MAGIC_HOT;
		run_hot(&l);
	} else if (shadow) {
		l.magic = MAGIC_RANDOM;
		run_random(&l, shadow, seed, period_us);
	} else {
		l.magic = MAGIC_WIDE;
		run_wide(&l, period_ms);
	}

	if (l.nlisted)
		print_status(&l);
	print_counters(&l, "summary ");
	printf(" result=%s\n", l.stale ? "FAIL" : "PASS");
	return l.stale ? 1 : 0;
}
