/* SPDX-License-Identifier: MIT */
/*
 * The store an rdma-block target exports (blk.h): a file, read and written
 * with pread / pwrite (whole transfers, EINTR and short counts retried,
 * FLUSH = fdatasync), or anonymous memory, which the target registers as
 * an MR of its own so that RDMA READ and WRITE move data straight between
 * the host's buffer and the store. The LBA range is checked by the caller
 * (blk_cmd_check); these functions check it again, cheaply, so that no
 * caller can make them touch bytes outside the store.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blk.h"

struct blk_store {
	int fd;	       /* a file, or -1 */
	uint8_t *mem;  /* memory, or NULL */
	uint64_t size; /* bytes exported: nblocks * BLK_BLOCK_SIZE */
};

int
blks_open_file(const char *path, uint64_t size, struct blk_store **out)
{
	struct blk_store *s;
	struct stat st;
	int fd, err;

	if (size % BLK_BLOCK_SIZE)
		return -EINVAL;
	fd = open(path, O_RDWR | O_CLOEXEC | (size ? O_CREAT : 0), 0600);
	if (fd < 0)
		return -errno;
	if ((size && ftruncate(fd, (off_t)size) < 0) || fstat(fd, &st) < 0)
		goto fail_errno;
	err = -EINVAL;
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		goto fail;
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);

		if (end < 0)
			goto fail_errno;
		st.st_size = end;
	}
	if ((uint64_t)st.st_size < BLK_BLOCK_SIZE)
		goto fail;
	err = -ENOMEM;
	if (!(s = calloc(1, sizeof(*s))))
		goto fail;
	s->fd = fd;
	s->size = (uint64_t)st.st_size / BLK_BLOCK_SIZE * BLK_BLOCK_SIZE;
	*out = s;
	return 0;
fail_errno:
	err = -errno;
fail:
	close(fd);
	return err;
}

int
blks_open_memory(uint64_t size, struct blk_store **out)
{
	struct blk_store *s;

	if (!size || size % BLK_BLOCK_SIZE || size > (uint64_t)SIZE_MAX / 2)
		return -EINVAL;
	if (!(s = calloc(1, sizeof(*s))))
		return -ENOMEM;
	s->mem =
	    mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->mem == MAP_FAILED) {
		free(s);
		return -ENOMEM;
	}
	s->fd = -1;
	s->size = size;
	*out = s;
	return 0;
}

void
blks_close(struct blk_store *s)
{
	if (!s)
		return;
	if (s->fd >= 0)
		close(s->fd);
	if (s->mem)
		munmap(s->mem, (size_t)s->size);
	free(s);
}

uint64_t
blks_nblocks(const struct blk_store *s)
{
	return s->size / BLK_BLOCK_SIZE;
}

void *
blks_memory(const struct blk_store *s)
{
	return s->mem;
}

/* [lba, lba + nblocks) inside the store: its byte offset, else -ERANGE. */
static int
range(const struct blk_store *s, uint64_t lba, uint32_t nblocks, uint64_t *off)
{
	uint64_t n = blks_nblocks(s);

	if (lba >= n || nblocks > n - lba)
		return -ERANGE;
	*off = lba * BLK_BLOCK_SIZE;
	return 0;
}

int
blks_read(struct blk_store *s, uint64_t lba, uint32_t nblocks, void *buf)
{
	size_t len = (size_t)nblocks * BLK_BLOCK_SIZE, done = 0;
	uint64_t off;
	int err;

	if ((err = range(s, lba, nblocks, &off)))
		return err;
	if (s->mem) {
		memcpy(buf, s->mem + off, len);
		return 0;
	}
	while (done < len) {
		ssize_t n = pread(s->fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* the file shrank under us */
		done += (size_t)n;
	}
	return 0;
}

int
blks_write(struct blk_store *s, uint64_t lba, uint32_t nblocks, const void *buf)
{
	size_t len = (size_t)nblocks * BLK_BLOCK_SIZE, done = 0;
	uint64_t off;
	int err;

	if ((err = range(s, lba, nblocks, &off)))
		return err;
	if (s->mem) {
		memcpy(s->mem + off, buf, len);
		return 0;
	}
	while (done < len) {
		ssize_t n =
		    pwrite(s->fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return 0;
}

int
blks_flush(struct blk_store *s)
{
	if (s->fd >= 0 && fdatasync(s->fd) < 0)
		return -errno;
	return 0;
}
