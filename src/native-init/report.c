/* Every failure of job-init ends here (see the format in job-init.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "report.h"

int status_fd = 3;

void write_all(int fd, const char *buf, int len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, (size_t)len);

		if (n < 0 && errno == EINTR)
			continue;
		/* Nobody is left to tell that a report failed: give up quietly. */
		if (n <= 0)
			return;
		buf += n;
		len -= (int)n;
	}
}

/*
 * Reports are formatted into stack buffers and go out through write(2), not
 * stdio: nothing allocates once the arguments are parsed. err is passed in
 * because formatting may clobber errno.
 */
_Noreturn void report(const char *step, int err, const char *detail, const char *message, int code)
{
	char record[PATH_MAX + 256];
	int len = snprintf(record, sizeof record, "%s\t%d\t%s\t%s\n",
			   step, err, strerror(err), detail);

	/* A supervisor that went away must not turn our exit code into SIGPIPE. */
	(void)signal(SIGPIPE, SIG_IGN);
	/* An over-long detail is cut, but the record still ends its line. */
	if (len >= (int)sizeof record) {
		len = sizeof record - 1;
		record[len - 1] = '\n';
	}
	if (status_fd >= 0)
		write_all(status_fd, record, len);
	write_all(STDERR_FILENO, message, (int)strlen(message));
	_exit(code);
}

_Noreturn void bail(const char *step, int err, const char *detail)
{
	char message[PATH_MAX + 256];

	(void)snprintf(message, sizeof message, "job-init: %s%s%s: %s\n",
		       step, *detail ? " " : "", detail, strerror(err));
	report(step, err, detail, message, EXIT_FAILED);
}
