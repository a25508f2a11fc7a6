/* Per-thread network namespace switching: setns(2) on the calling thread only, then back. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "jn.h"

int jn_netns_open(const char *path)
{
	int fd;
	if (!path || !*path)
		return -ENOENT;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int jn_netns_enter(int target_fd, int *saved)
{
	int self;
	*saved = -1;
	if (target_fd < 0)
		return 0;
	self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return -errno;
	if (setns(target_fd, CLONE_NEWNET) < 0) {
		int e = errno;
		close(self);
		return -e;
	}
	*saved = self;
	return 0;
}

void jn_netns_leave(int saved)
{
	if (saved < 0)
		return;
	if (setns(saved, CLONE_NEWNET) < 0) {
		perror("journey native: cannot return to the original network namespace");
		abort();
	}
	close(saved);
}
