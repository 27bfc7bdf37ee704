/*
 * job-init: the last step between the job supervisor and a job's command.
 *
 *   job-init [--status-fd N] [--stdio inherit|pipes] [--cgroup <dir>]... -- <command> [args...]
 *
 * Joins the job's cgroups, starts a new session, undoes the signal state and
 * file descriptors it inherited, and execs the command: one function per step,
 * in the order they run.
 *
 * The status fd (default 3) is close-on-exec, so the supervisor reads it to
 * EOF. No bytes: exec succeeded. Otherwise one record
 *   <step>\t<errno>\t<strerror>\t<detail>\n
 * and exit 127 (125 for bad usage) without running the command. Steps are
 * usage, cloexec, cgroup, oomscore, setsid, signals, pipes, closefds and exec; detail is
 * the cgroup dir for cgroup, the command for exec, empty otherwise. With
 * --stdio pipes one more line comes first, "ready\t<stdout fd>\t<stderr fd>\n",
 * and job-init waits for one byte back (see make_stdio_pipes).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define EXIT_USAGE 125
#define EXIT_FAILED 127
/* glibc keeps signals 32 and 33 for its threads: sigaction says EINVAL. */
#define KERNEL_SIGRTMIN 32

/* Where status records go; -1 when --status-fd was not a valid number. */
static int status_fd = 3;
/* --stdio pipes: give the command real pipes on fds 1 and 2. */
static int stdio_pipes;

static void write_all(int fd, const char *buf, int len)
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
 * Every failure ends here. Reports are formatted into stack buffers and go out
 * through write(2), not stdio: nothing allocates once the arguments are parsed.
 * err is passed in because formatting may clobber errno.
 */
static _Noreturn void report(const char *step, int err, const char *detail,
			     const char *message, int code)
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

static _Noreturn void bail(const char *step, int err, const char *detail)
{
	char message[PATH_MAX + 256];

	(void)snprintf(message, sizeof message, "job-init: %s%s%s: %s\n",
		       step, *detail ? " " : "", detail, strerror(err));
	report(step, err, detail, message, EXIT_FAILED);
}

static _Noreturn void usage(const char *problem, const char *arg)
{
	char message[PATH_MAX + 256];

	(void)snprintf(message, sizeof message, "job-init: %s %s\nusage: job-init "
		       "[--status-fd N] [--stdio inherit|pipes] [--cgroup <dir>]... -- <command> [args...]\n",
		       problem, arg);
	report("usage", EINVAL, "", message, EXIT_USAGE);
}

/* A non-negative decimal int, or -1. */
static int parse_fd(const char *s)
{
	long fd = 0;

	if (*s == '\0')
		return -1;
	for (; *s; s++)
		if (*s < '0' || *s > '9' || (fd = fd * 10 + (*s - '0')) > INT_MAX)
			return -1;
	return (int)fd;
}

/*
 * Options come in pairs before "--"; returns the index of the command. A
 * usage error found before --status-fd is read goes to the default fd 3.
 */
static int parse_args(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i += 2) {
		if (strcmp(argv[i], "--") == 0) {
			if (i + 1 == argc)
				usage("missing command after", "'--'");
			/* The pipes go onto fds 1 and 2: a status fd there would be lost. */
			if (stdio_pipes && status_fd <= STDERR_FILENO)
				usage("--stdio pipes puts the pipes on fds 1 and 2: --status-fd must be", "3 or more");
			return i + 1;
		}
		if (argv[i][0] != '-')
			usage("missing '--' before the command", argv[i]);
		if (strcmp(argv[i], "--status-fd") != 0 && strcmp(argv[i], "--cgroup") != 0 &&
		    strcmp(argv[i], "--stdio") != 0)
			usage("unknown option", argv[i]);
		if (i + 1 == argc)
			usage("missing value for", argv[i]);
		if (strcmp(argv[i], "--status-fd") == 0 && (status_fd = parse_fd(argv[i + 1])) < 0)
			usage("--status-fd needs an fd number, not", argv[i + 1]);
		if (strcmp(argv[i], "--stdio") == 0) {
			if (strcmp(argv[i + 1], "pipes") == 0)
				stdio_pipes = 1;
			else if (strcmp(argv[i + 1], "inherit") != 0)
				usage("--stdio takes inherit or pipes, not", argv[i + 1]);
		}
	}
	usage("missing", "'--' and a command");
}

/*
 * The status fd must stay open through every step, so that failures can be
 * reported, and close by itself at the exact moment exec succeeds: EOF with
 * no data then tells the supervisor the command runs, with no race and no
 * extra message.
 */
static void set_status_cloexec(int fd)
{
	int flags = fcntl(fd, F_GETFD);

	if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
		bail("cloexec", errno, "");
}

/*
 * Join the cgroups before anything else the job does. Once our pid is in
 * cgroup.procs, every process the command forks and every page it touches is
 * counted against the job's limits. Moving the job from outside after the
 * spawn would race with it: children forked before the move would escape.
 */
static void join_cgroup(const char *dir, pid_t pid)
{
	char path[PATH_MAX];
	char pid_text[32];
	int path_len = snprintf(path, sizeof path, "%s/cgroup.procs", dir);
	int pid_len = snprintf(pid_text, sizeof pid_text, "%d", (int)pid);
	ssize_t written;
	int fd;

	if (path_len >= (int)sizeof path)
		bail("cgroup", ENAMETOOLONG, dir);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		bail("cgroup", errno, dir);
	/* The kernel takes the whole pid in one write or rejects it. */
	written = write(fd, pid_text, (size_t)pid_len);
	if (written != pid_len)
		bail("cgroup", written < 0 ? errno : EIO, dir);
	if (close(fd) < 0)
		bail("cgroup", errno, dir);
}

/* parse_args has checked that argv[1..command) holds (option, value) pairs. */
static void join_cgroups(char **argv, int command)
{
	pid_t pid = getpid();
	int i;

	for (i = 1; i + 1 < command; i += 2)
		if (strcmp(argv[i], "--cgroup") == 0)
			join_cgroup(argv[i + 1], pid);
}

/*
 * A server run with a protective OOM score (a systemd unit's OOMScoreAdjust=)
 * would pass it on to every job through fork and exec: a job that runs the
 * host out of memory must be as killable as any other process, so reset it.
 */
static void reset_oom_score(void)
{
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);

	if (fd < 0 || write(fd, "0", 1) != 1)
		bail("oomscore", errno, "");
	(void)close(fd);
}

/*
 * A new session makes the job's pid its process group id too, so the
 * supervisor can signal the whole job tree with kill(-pid), and the job shares
 * neither a group nor a controlling terminal with the supervisor. This fails
 * with EPERM if we already lead a process group: do not spawn us detached.
 */
static void isolate_session(void)
{
	if (setsid() < 0)
		bail("setsid", errno, "");
}

/*
 * exec resets handled signals to their defaults but keeps ignored ones and the
 * blocked mask. Without this, a job started by a supervisor that ignores
 * SIGTERM or SIGPIPE would ignore them too, and stop could never be graceful.
 */
static void restore_signals(void)
{
	struct sigaction dfl;
	sigset_t empty;
	int sig;

	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	if (sigemptyset(&dfl.sa_mask) < 0 || sigemptyset(&empty) < 0)
		bail("signals", errno, "");

	for (sig = 1; sig < _NSIG; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, &dfl, NULL) == 0)
			continue;
		if (errno == EINVAL && sig >= KERNEL_SIGRTMIN && sig < SIGRTMIN)
			continue;
		bail("signals", errno, "");
	}
	if (sigprocmask(SIG_SETMASK, &empty, NULL) < 0)
		bail("signals", errno, "");
}

/*
 * Node gives a child socketpairs for "pipe" stdio, and a socket cannot be
 * opened by path: a job's `echo oops > /dev/stderr` would fail with ENXIO.
 * So job-init puts real pipes on fds 1 and 2. The supervisor cannot be handed
 * their read ends directly; it opens them through /proc/<our pid>/fd/<n>,
 * which only works while we still hold them, so we announce them on the
 * status fd (a socketpair, so it carries the reply too) and wait for one byte
 * saying the supervisor has them. Our copies are close-on-exec.
 */
static void make_stdio_pipes(void)
{
	char ready[64];
	int out[2], err[2];
	ssize_t n;
	char ack;

	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
		bail("pipes", errno, "");
	/* dup2 clears close-on-exec on the copy: exactly what fds 1 and 2 need. */
	if (dup2(out[1], STDOUT_FILENO) < 0 || dup2(err[1], STDERR_FILENO) < 0)
		bail("pipes", errno, "");
	(void)close(out[1]);
	(void)close(err[1]);

	write_all(status_fd, ready, snprintf(ready, sizeof ready, "ready\t%d\t%d\n", out[0], err[0]));
	do
		n = read(status_fd, &ack, 1);
	while (n < 0 && errno == EINTR);
	/* EOF: the supervisor is gone or gave up on us; nobody would read the job. */
	if (n != 1)
		bail("pipes", n < 0 ? errno : EPIPE, "");
}

/*
 * Fallback for kernels before 5.9, which lack close_range: walk /proc/self/fd
 * with getdents64 into a stack buffer, since opendir would allocate. Closing
 * while reading is safe: the directory's offsets are fd numbers, so closed
 * entries never shift the ones still to come.
 */
static void close_fds_by_listing(int keep)
{
	_Alignas(struct dirent64) char buf[4096];
	ssize_t n, off;
	int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dir < 0)
		bail("closefds", errno, "");
	while ((n = getdents64(dir, buf, sizeof buf)) > 0) {
		for (off = 0; off < n; off += ((struct dirent64 *)(buf + off))->d_reclen) {
			int fd = parse_fd(((struct dirent64 *)(buf + off))->d_name);

			/* Linux frees the fd even when close fails: nothing to retry. */
			if (fd > STDERR_FILENO && fd != keep && fd != dir)
				(void)close(fd);
		}
	}
	if (n < 0)
		bail("closefds", errno, "");
	(void)close(dir);
}

/*
 * Only stdio and the status fd may reach the command. Any other fd the
 * supervisor leaked (a TLS socket, another job's pipe) would be readable by
 * the job and would keep that pipe's other end from ever seeing EOF. A status
 * fd in 0..2 is simply one of the stdio fds. close_range fails on an empty
 * range, so the ranges around the status fd are only asked for when non-empty.
 */
static void close_other_fds(int keep)
{
	int rc = 0;

	if (keep <= STDERR_FILENO)
		rc = close_range(STDERR_FILENO + 1, ~0U, 0);
	if (keep > STDERR_FILENO + 1)
		rc = close_range(STDERR_FILENO + 1, (unsigned)keep - 1, 0);
	if (rc == 0 && keep > STDERR_FILENO && keep < INT_MAX)
		rc = close_range((unsigned)keep + 1, ~0U, 0);

	if (rc < 0 && errno == ENOSYS)
		close_fds_by_listing(keep);
	else if (rc < 0)
		bail("closefds", errno, "");
}

int main(int argc, char **argv)
{
	int command = parse_args(argc, argv);

	/* From here on: no allocation, only system calls and stack buffers. */
	set_status_cloexec(status_fd);
	join_cgroups(argv, command);
	reset_oom_score();
	isolate_session();
	restore_signals();
	if (stdio_pipes)
		make_stdio_pipes();
	close_other_fds(status_fd);

	execvp(argv[command], &argv[command]);
	bail("exec", errno, argv[command]);
}
