/*
 * tstaeshm dirty|remap|sum [ADDR] [--size BYTES] [--duration SECONDS] [--seed N] [--file PATH]
 *
 * Guest workload of the shared-memory replication procedure (seed: "tstaeshm dirty
 * 0x20000000").  The memory is the BAR2 of QEMU's ivshmem device (PCI 1af4:1110), whose
 * host side is a file such as /dev/shm/aeshmem.
 *
 * Without ADDR the device is found in sysfs and BAR2 is mapped through its resource2 file
 * (the region's size comes from sysfs).  With ADDR that physical address is mapped through
 * /dev/mem (--size, default 1 MiB).  --file PATH maps a file instead (at ADDR, default 0),
 * which is how the checksum is tested against "sum -r" on a host.
 *
 *   dirty   rewrite random pages in a tight loop through one long-lived mapping (the seed)
 *   remap   rewrite random pages, mapping the page afresh for every write
 *   sum     print the BSD checksum of the region, as "sum -r" computes it for a file
 *
 * Device memory is accessed with aligned 64-bit loads and stores only.  Every write
 * rewrites a whole page with a new sequence number, so the page always changes.
 * Output: "tstaeshm: start ...", one status line per second, and on SIGTERM/SIGINT or
 * when --duration ends "tstaeshm: summary mode=M writes=N pages=N seconds=S".
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define WORDS_PER_PAGE (PAGE / sizeof(uint64_t))

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int read_hex_file(const char *path, unsigned long *out)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	int ok = fscanf(f, "%lx", out) == 1;
	fclose(f);
	return ok ? 0 : -1;
}

/* Where the memory comes from: a file to mmap and the offset of the region in it. */
struct source {
	char path[512];
	uint64_t offset; /* physical address for /dev/mem, 0 for resource2 */
	uint64_t size;
};

static int find_ivshmem(struct source *src)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	if (!d) {
		fprintf(stderr, "tstaeshm: no PCI bus in sysfs: %s\n", strerror(errno));
		return -1;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		char path[512];
		unsigned long vendor, device;
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", e->d_name);
		if (read_hex_file(path, &vendor))
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", e->d_name);
		if (read_hex_file(path, &device))
			continue;
		if (vendor != 0x1af4 || device != 0x1110)
			continue;

		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			break;
		unsigned long long start = 0, end = 0, flags = 0;
		for (int bar = 0; bar <= 2; bar++)
			if (fscanf(f, "%llx %llx %llx", &start, &end, &flags) != 3)
				start = end = 0;
		fclose(f);
		if (end <= start) {
			fprintf(stderr, "tstaeshm: ivshmem %s has no BAR2\n", e->d_name);
			break;
		}
		/* make sure memory decoding is on, even without a driver bound */
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/enable", e->d_name);
		int fd = open(path, O_WRONLY);
		if (fd >= 0) {
			if (write(fd, "1", 1) < 0)
				fprintf(stderr, "tstaeshm: cannot enable %s: %s\n", e->d_name,
					strerror(errno));
			close(fd);
		}
		snprintf(src->path, sizeof(src->path), "/sys/bus/pci/devices/%s/resource2",
			 e->d_name);
		src->offset = 0;
		src->size = end - start + 1;
		printf("tstaeshm: ivshmem %s bar2=0x%llx size=%" PRIu64 "\n", e->d_name, start,
		       src->size);
		closedir(d);
		return 0;
	}
	closedir(d);
	fprintf(stderr, "tstaeshm: no ivshmem device (PCI 1af4:1110) found; "
			"start QEMU with -device ivshmem-plain or give ADDR\n");
	return -1;
}

static volatile uint64_t *map_range(const struct source *src, uint64_t off, uint64_t len, int *fdp)
{
	int fd = open(src->path, O_RDWR | O_SYNC);
	if (fd < 0) {
		fprintf(stderr, "tstaeshm: open %s: %s\n", src->path, strerror(errno));
		return NULL;
	}
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)(src->offset + off));
	if (p == MAP_FAILED) {
		fprintf(stderr, "tstaeshm: mmap %s at 0x%" PRIx64 ": %s\n", src->path,
			src->offset + off, strerror(errno));
		close(fd);
		return NULL;
	}
	*fdp = fd;
	return (volatile uint64_t *)p;
}

static void fill_page(volatile uint64_t *p, uint64_t page, uint64_t seq)
{
	for (unsigned i = 0; i < WORDS_PER_PAGE; i++)
		p[i] = (seq << 24) ^ (page << 12) ^ i;
}

/* BSD checksum, as "sum -r": 16-bit rotating sum over bytes, size in 1 KiB blocks. */
static int print_sum(volatile uint64_t *mem, uint64_t size)
{
	unsigned sum = 0;
	for (uint64_t w = 0; w < size / 8; w++) {
		uint64_t v = mem[w];
		for (int byte = 0; byte < 8; byte++) {
			sum = (sum >> 1) + ((sum & 1) << 15);
			sum += (unsigned)(v >> (8 * byte)) & 0xff; /* little-endian byte order */
			sum &= 0xffff;
		}
	}
	printf("tstaeshm: sum -r %05u %" PRIu64 "\n", sum, (size + 1023) / 1024);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: tstaeshm dirty|remap|sum [ADDR] [--size BYTES] "
			"[--duration SECONDS] [--seed N] [--file PATH]\n");
}

int main(int argc, char **argv)
{
	const char *mode = NULL;
	const char *addr = NULL;
	uint64_t size = 1u << 20;
	double duration = 0;
	unsigned seed = (unsigned)time(NULL);
	const char *file = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--size") && i + 1 < argc)
			size = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--duration") && i + 1 < argc)
			duration = strtod(argv[++i], NULL);
		else if (!strcmp(argv[i], "--file") && i + 1 < argc)
			file = argv[++i];
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = (unsigned)strtoul(argv[++i], NULL, 0);
		else if (!mode)
			mode = argv[i];
		else if (!addr)
			addr = argv[i];
		else {
			usage();
			return 2;
		}
	}
	if (!mode || (strcmp(mode, "dirty") && strcmp(mode, "remap") && strcmp(mode, "sum"))) {
		usage();
		return 2;
	}

	struct source src;
	memset(&src, 0, sizeof(src));
	if (addr || file) {
		char *end = "";
		src.offset = addr ? strtoull(addr, &end, 0) : 0;
		if (*end || src.offset % PAGE) {
			fprintf(stderr, "tstaeshm: ADDR must be a page-aligned number, got %s\n", addr);
			return 2;
		}
		snprintf(src.path, sizeof(src.path), "%s", file ? file : "/dev/mem");
		src.size = size;
	} else if (find_ivshmem(&src)) {
		return 3;
	}
	if (src.size < PAGE || src.size % PAGE) {
		fprintf(stderr, "tstaeshm: region size %" PRIu64 " is not a whole number of pages\n",
			src.size);
		return 2;
	}
	uint64_t npages = src.size / PAGE;

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);

	int fd;
	volatile uint64_t *mem = NULL;
	if (strcmp(mode, "remap")) {
		mem = map_range(&src, 0, src.size, &fd);
		if (!mem)
			return 3;
	}
	if (!strcmp(mode, "sum"))
		return print_sum(mem, src.size);

	printf("tstaeshm: start mode=%s source=%s offset=0x%" PRIx64 " size=%" PRIu64
	       " pages=%" PRIu64 " seed=%u\n", mode, src.path, src.offset, src.size, npages, seed);
	srand(seed);
	double start = now_seconds(), next_status = start + 1.0;
	uint64_t writes = 0;
	unsigned char *touched = calloc(npages, 1);
	uint64_t ntouched = 0;

	while (!stop_requested) {
		uint64_t page = (uint64_t)rand() % npages;
		if (mem) {
			fill_page(mem + page * WORDS_PER_PAGE, page, writes);
		} else {
			int pfd;
			volatile uint64_t *p = map_range(&src, page * PAGE, PAGE, &pfd);
			if (!p)
				return 3;
			fill_page(p, page, writes);
			munmap((void *)p, PAGE);
			close(pfd);
		}
		writes++;
		if (!touched[page]) {
			touched[page] = 1;
			ntouched++;
		}
		if ((writes & 63) == 0) {
			double now = now_seconds();
			if (duration > 0 && now - start >= duration)
				break;
			if (now >= next_status) {
				printf("tstaeshm: writes=%" PRIu64 " pages=%" PRIu64 "\n", writes, ntouched);
				next_status += 1.0;
			}
		}
	}
	printf("tstaeshm: summary mode=%s writes=%" PRIu64 " pages=%" PRIu64 " seconds=%.1f\n",
	       mode, writes, ntouched, now_seconds() - start);
	return 0;
}
