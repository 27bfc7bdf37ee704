/*
 * job-init: the last step between the job supervisor and a job's command.
 *
 *   job-init [--status-fd N] [--stdio inherit|pipes] [--stdin inherit|pipe] [--cgroup <dir>]...
 *            [--expect-cgroup <controller>:<path>]... [--namespaces pid,mount,net,uts,ipc]
 *            [--hostname NAME] [--tmp-size BYTES] [--hide PATH]... [--rootfs DIR]
 *            [--user UID:GID] [--workdir DIR] [--env-fd N] [--report-fd N] -- <command> [args...]
 *
 * Joins the job's cgroups and checks that it is in them, before anything
 * else and before any namespace exists; starts a new session, undoes the
 * signal state and file descriptors it inherited; then creates the job's
 * namespaces and its view of the filesystem (namespaces.c, mounts.c),
 * switches to its user (identity.c) and execs the command: one function per
 * step, in the order they run.
 *
 * The status fd (default 3) is close-on-exec, so the supervisor reads it to
 * EOF. Just before exec, job-init writes "exec\n"; that line and then EOF:
 * exec succeeded. EOF without it: job-init died before it got there (killed
 * by an operator or the OOM killer during setup), and the command never
 * ran. A failed step writes one record
 *   <step>\t<errno>\t<strerror>\t<detail>\n
 * and exits 127 (125 for bad usage) without running the command. Steps are
 * usage, env, cloexec, cgroup, cgroupcheck, oomscore, setsid, signals, pipes,
 * closefds, namespaces, mount, hide, rootfs, network, hostname, init,
 * capabilities, user, workdir and exec; detail is the cgroup dir for cgroup,
 * the expectation for cgroupcheck, the path for mount, hide, rootfs and
 * workdir, the interface for network, the name for hostname, what failed
 * for user, the command for exec. With --stdio pipes one more line comes
 * first, "ready\t<stdout fd>\t<stderr fd>\n", and job-init waits for one
 * byte back (see make_stdio_pipes); with --stdin pipe as well, the line
 * ends "\t<stdin fd>", the write end of a pipe on the command's fd 0.
 *
 * --namespaces empty or absent runs the command in job-init's own
 * namespaces; --hostname needs uts and --rootfs mount; --hide and
 * --tmp-size (default 64 MiB) count only with mount.
 *
 * The command's environment is what --env-fd N holds, read to EOF once the
 * cgroups are joined (NAME=value entries, each ending in a NUL), and nothing
 * else; without it, an empty one. Not job-init's own environment: job-init
 * runs as root until its last step and libc reads some variables at
 * startup (GLIBC_TUNABLES, MALLOC_*) before main. Not arguments either: the
 * processes job-init leaves around a PID namespace never exec, and their
 * command line is readable by every user of the host.
 *
 * --report-fd N (it may be the --env-fd, a socketpair) is where, with a PID
 * namespace, the init writes "exit\t<wait status>\n" as soon as it has
 * reaped the job: how the job ended reaches the supervisor even when a stop's
 * SIGKILL takes the init and the outside process before they have passed it
 * on through their own exit.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "identity.h"
#include "mounts.h"
#include "namespaces.h"
#include "report.h"
#include "spec.h"

/* glibc keeps signals 32 and 33 for its threads: sigaction says EINVAL. */
#define KERNEL_SIGRTMIN 32

static _Noreturn void usage(const char *problem, const char *arg)
{
	char message[PATH_MAX + 256];

	(void)snprintf(message, sizeof message, "job-init: %s %s\nusage: job-init "
		       "[--status-fd N] [--stdio inherit|pipes] [--stdin inherit|pipe] [--cgroup <dir>]... [--expect-cgroup <controller>:<path>]...\n"
		       "    [--namespaces pid,mount,net,uts,ipc] [--hostname NAME] [--tmp-size BYTES] [--hide PATH]...\n"
		       "    [--rootfs DIR] [--user UID:GID] [--workdir DIR] [--env-fd N] [--report-fd N] -- <command> [args...]\n",
		       problem, arg);
	report("usage", EINVAL, "", message, EXIT_USAGE);
}

/*
 * The decimal number at the start of s, at most max; -1 when there is none
 * or it is larger. *end (when given) is set past its digits; without end
 * the whole string must be the number.
 */
static long long parse_decimal(const char *s, long long max, const char **end)
{
	long long n = 0;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++)
		if ((n = n * 10 + (*p - '0')) > max)
			return -1;
	if (p == s || (!end && *p != '\0'))
		return -1;
	if (end)
		*end = p;
	return n;
}

static int parse_fd(const char *s)
{
	return (int)parse_decimal(s, INT_MAX, NULL);
}

/* uid_t/gid_t, but not (uid_t)-1, which means "unchanged" to the kernel. */
#define MAX_ID 0xfffffffeLL
/* tmpfs takes size= in bytes as given; 2^60 is past any real memory limit. */
#define MAX_SIZE (1LL << 60)

static void parse_user(struct job_spec *spec, const char *value)
{
	const char *end = value;
	long long uid = parse_decimal(value, MAX_ID, &end), gid = -1;

	if (uid >= 0 && *end == ':')
		gid = parse_decimal(end + 1, MAX_ID, NULL);
	if (gid < 0)
		usage("--user takes UID:GID, not", value);
	spec->switch_user = 1;
	spec->uid = (uid_t)uid;
	spec->gid = (gid_t)gid;
}

static void parse_namespaces(struct job_spec *spec, const char *value)
{
	static const struct { const char *name; int flag; } known[] = {
		{ "pid", CLONE_NEWPID }, { "mount", CLONE_NEWNS }, { "net", CLONE_NEWNET },
		{ "uts", CLONE_NEWUTS }, { "ipc", CLONE_NEWIPC },
	};
	const char *name = value;

	while (*name) {
		size_t len = strcspn(name, ",");
		unsigned int i;

		for (i = 0; i < sizeof known / sizeof known[0]; i++)
			if (strlen(known[i].name) == len && strncmp(name, known[i].name, len) == 0)
				break;
		if (i == sizeof known / sizeof known[0])
			usage("--namespaces takes a list of pid, mount, net, uts and ipc, not", value);
		spec->namespaces |= known[i].flag;
		name += len + (name[len] == ',');
	}
}

static int is(const char *arg, const char *option)
{
	return strcmp(arg, option) == 0;
}

/* Every option takes a value; the repeatable ones are read again where they are used. */
static void parse_option(struct job_spec *spec, const char *option, const char *value)
{
	if (is(option, "--status-fd")) {
		if ((status_fd = parse_fd(value)) < 0)
			usage("--status-fd needs an fd number, not", value);
	} else if (is(option, "--stdio")) {
		if (is(value, "pipes"))
			spec->stdio_pipes = 1;
		else if (!is(value, "inherit"))
			usage("--stdio takes inherit or pipes, not", value);
	} else if (is(option, "--stdin")) {
		if (is(value, "pipe"))
			spec->stdin_pipe = 1;
		else if (!is(value, "inherit"))
			usage("--stdin takes inherit or pipe, not", value);
	} else if (is(option, "--namespaces")) {
		parse_namespaces(spec, value);
	} else if (is(option, "--hostname")) {
		spec->hostname = value;
	} else if (is(option, "--tmp-size")) {
		if (parse_decimal(value, MAX_SIZE, NULL) <= 0)
			usage("--tmp-size takes a number of bytes, not", value);
		spec->tmp_size = value;
	} else if (is(option, "--rootfs")) {
		spec->rootfs = value;
	} else if (is(option, "--user")) {
		parse_user(spec, value);
	} else if (is(option, "--workdir")) {
		spec->workdir = value;
	} else if (is(option, "--env-fd")) {
		if ((spec->env_fd = parse_fd(value)) < 0)
			usage("--env-fd needs an fd number, not", value);
	} else if (is(option, "--report-fd")) {
		if ((spec->report_fd = parse_fd(value)) < 0)
			usage("--report-fd needs an fd number, not", value);
	} else if (!is(option, "--cgroup") && !is(option, "--expect-cgroup") && !is(option, "--hide")) {
		usage("unknown option", option);
	}
}

/*
 * Options come in pairs before "--"; sets spec->command to the index of the
 * command. A usage error found before --status-fd is read goes to the
 * default fd 3.
 */
static void parse_args(struct job_spec *spec, int argc, char **argv)
{
	int i;

	spec->argv = argv;
	spec->tmp_size = "67108864";
	spec->env_fd = -1;
	spec->report_fd = -1;
	for (i = 1; i < argc; i += 2) {
		if (strcmp(argv[i], "--") == 0) {
			if (i + 1 == argc)
				usage("missing command after", "'--'");
			/* The pipes go onto fds 1 and 2: a status fd there would be lost. */
			if (spec->stdin_pipe && !spec->stdio_pipes)
				usage("--stdin pipe needs", "--stdio pipes");
			if (spec->stdio_pipes && status_fd <= STDERR_FILENO)
				usage("--stdio pipes puts the pipes on fds 1 and 2: --status-fd must be", "3 or more");
			if (spec->env_fd >= 0 && spec->env_fd == status_fd)
				usage("--env-fd must not be", "the status fd");
			if (spec->report_fd >= 0 && (spec->report_fd == status_fd || spec->report_fd <= STDERR_FILENO))
				usage("--report-fd must be past 2 and not", "the status fd");
			if (spec->hostname && !(spec->namespaces & CLONE_NEWUTS))
				usage("--hostname needs", "--namespaces uts");
			if (spec->rootfs && !(spec->namespaces & CLONE_NEWNS))
				usage("--rootfs needs", "--namespaces mount");
			if (spec->rootfs && spec->rootfs[0] != '/')
				usage("--rootfs takes an absolute path, not", spec->rootfs);
			spec->command = i + 1;
			return;
		}
		if (argv[i][0] != '-')
			usage("missing '--' before the command", argv[i]);
		if (i + 1 == argc)
			usage("missing value for", argv[i]);
		parse_option(spec, argv[i], argv[i + 1]);
	}
	usage("missing", "'--' and a command");
}

void for_each_option(const struct job_spec *spec, const char *name, void (*fn)(const char *value))
{
	int i;

	for (i = 1; i + 1 < spec->command; i += 2)
		if (strcmp(spec->argv[i], name) == 0)
			fn(spec->argv[i + 1]);
}

/*
 * The status fd must stay open through every step, so that failures can be
 * reported, and close by itself at the exact moment exec succeeds: EOF after
 * the "exec" line then tells the supervisor the command runs, with no race.
 * The report fd is the init's alone: the command must not inherit it.
 */
static void set_cloexec(int fd)
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

static void join_own_cgroup(const char *dir)
{
	join_cgroup(dir, getpid());
}

/* /proc/self/cgroup: "<hierarchy id>:<controllers, comma-separated>:<path>" per line; v2's is "0::<path>". */
static int in_hierarchy(const char *controllers, size_t len, const char *wanted, size_t wanted_len)
{
	const char *end = controllers + len;

	if (wanted_len == 0)
		return len == 0;
	while (controllers < end) {
		size_t name_len = strcspn(controllers, ",:");

		if (name_len == wanted_len && strncmp(controllers, wanted, wanted_len) == 0)
			return 1;
		controllers += name_len + 1;
	}
	return 0;
}

/*
 * /proc/self/cgroup as it was once every --cgroup had been joined; read once
 * for every check. A line is at most a hierarchy id, its controllers and a
 * path of PATH_MAX; this holds sixteen such lines, far more than any v1
 * host mounts. A file that does not fit fails the start: a table cut short
 * would fail the check of a hierarchy it lost, or worse, pass on half a line.
 */
static char cgroup_table[16 * (PATH_MAX + 256)];

static void read_cgroup_table(void)
{
	size_t len = 0;
	ssize_t n;
	int fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		bail("cgroupcheck", errno, "/proc/self/cgroup");
	/* The last byte is the NUL: a read that fills the rest is followed by one that must find EOF. */
	while ((n = read(fd, cgroup_table + len, sizeof cgroup_table - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			bail("cgroupcheck", errno, "/proc/self/cgroup");
		len += (size_t)n;
		if (len == sizeof cgroup_table)
			bail("cgroupcheck", EFBIG, "/proc/self/cgroup");
	}
	(void)close(fd);
	cgroup_table[len] = '\0';
}

/*
 * Reads back what the kernel says our cgroups are: a join that went
 * somewhere else (a path resolved in another cgroup namespace, a hierarchy
 * mounted twice) must fail the start, not run the job without its limits.
 * The expectation is "<controller>:<path>", "" as controller meaning v2;
 * the path is relative to where the supervisor found the hierarchy mounted.
 */
static void check_cgroup(const char *expected)
{
	const char *colon = strchr(expected, ':'), *line;
	size_t key_len, want;

	if (!colon)
		bail("cgroupcheck", EINVAL, expected);
	key_len = (size_t)(colon - expected);
	want = strlen(colon + 1);
	for (line = cgroup_table; *line; line += strcspn(line, "\n") + (line[strcspn(line, "\n")] == '\n')) {
		const char *controllers = strchr(line, ':'), *path;
		size_t line_len = strcspn(line, "\n");

		if (!controllers || controllers - line >= (long)line_len)
			continue;
		controllers++;
		path = strchr(controllers, ':');
		if (!path || path - line >= (long)line_len)
			continue;
		if (!in_hierarchy(controllers, (size_t)(path - controllers), expected, key_len))
			continue;
		path++;
		/* Ends with: where cgroupfs is mounted from below the hierarchy's root, the kernel shows the full path. */
		if ((size_t)(line + line_len - path) >= want &&
		    strncmp(line + line_len - want, colon + 1, want) == 0)
			return;
		bail("cgroupcheck", EXDEV, expected);
	}
	bail("cgroupcheck", ENOENT, expected);
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
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		/*
		 * libc keeps the signals below SIGRTMIN for itself and refuses
		 * them (EINVAL); but glibc's posix_spawn, which starts us, leaves
		 * them ignored, and an ignored signal survives exec: undo that
		 * with the kernel's call. Single-threaded, we never need them.
		 */
		if (sig >= KERNEL_SIGRTMIN && sig < SIGRTMIN) {
			struct { void (*handler)(int); unsigned long flags; void (*restorer)(void); unsigned long mask; } kernel_dfl = { SIG_DFL, 0, NULL, 0 };
			if (syscall(SYS_rt_sigaction, sig, &kernel_dfl, NULL, sizeof kernel_dfl.mask) == 0)
				continue;
		} else if (sigaction(sig, &dfl, NULL) == 0) {
			continue;
		}
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
 *
 * With stdin, the same for a pipe on fd 0, whose write end the supervisor
 * opens. Our copy of that end is closed once the supervisor has its own:
 * around a PID namespace job-init's processes never exec, and a write end
 * they kept would keep the job from ever reading EOF.
 */
static void make_stdio_pipes(int with_stdin)
{
	char ready[64];
	int out[2], err[2], in[2] = { -1, -1 };
	ssize_t n;
	char ack;

	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || (with_stdin && pipe2(in, O_CLOEXEC) < 0))
		bail("pipes", errno, "");
	/* dup2 clears close-on-exec on the copy: exactly what fds 0, 1 and 2 need. */
	if (dup2(out[1], STDOUT_FILENO) < 0 || dup2(err[1], STDERR_FILENO) < 0 || (with_stdin && dup2(in[0], STDIN_FILENO) < 0))
		bail("pipes", errno, "");
	(void)close(out[1]);
	(void)close(err[1]);
	if (with_stdin) {
		(void)close(in[0]);
		n = snprintf(ready, sizeof ready, "ready\t%d\t%d\t%d\n", out[0], err[0], in[1]);
	} else {
		n = snprintf(ready, sizeof ready, "ready\t%d\t%d\n", out[0], err[0]);
	}
	write_all(status_fd, ready, (int)n);
	do
		n = read(status_fd, &ack, 1);
	while (n < 0 && errno == EINTR);
	/* EOF: the supervisor is gone or gave up on us; nobody would read the job. */
	if (n != 1)
		bail("pipes", n < 0 ? errno : EPIPE, "");
	if (with_stdin)
		(void)close(in[1]);
}

/*
 * Fallback for kernels before 5.9, which lack close_range: walk /proc/self/fd
 * with getdents64 into a stack buffer, since opendir would allocate. Closing
 * while reading is safe: the directory's offsets are fd numbers, so closed
 * entries never shift the ones still to come.
 */
static void close_fds_by_listing(int keep, int keep_too)
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
			if (fd > STDERR_FILENO && fd != keep && fd != keep_too && fd != dir)
				(void)close(fd);
		}
	}
	if (n < 0)
		bail("closefds", errno, "");
	(void)close(dir);
}

/* close_range of [from, to], when that is not empty. */
static int close_between(int from, int to)
{
	return from <= to ? close_range((unsigned)from, (unsigned)to, 0) : 0;
}

/*
 * Only stdio, the status fd and the report fd may outlive this. Any other fd
 * the supervisor leaked (a TLS socket, another job's pipe) would be readable
 * by the job and would keep that pipe's other end from ever seeing EOF. A
 * kept fd in 0..2 (or -1, none) needs nothing: the ranges are those between
 * the kept fds above 2, each only when non-empty, as close_range fails on an
 * empty one.
 */
static void close_other_fds(int keep, int keep_too)
{
	int low = keep < keep_too ? keep : keep_too, high = keep < keep_too ? keep_too : keep;
	int from = STDERR_FILENO + 1, rc = 0;

	if (low > STDERR_FILENO) {
		rc = close_between(from, low - 1);
		from = low + 1;
	}
	if (rc == 0 && high > STDERR_FILENO && high != low) {
		rc = close_between(from, high - 1);
		from = high + 1;
	}
	/* A kept fd of INT_MAX leaves nothing above it (and from would have overflowed). */
	if (rc == 0 && high < INT_MAX)
		rc = close_range((unsigned)from, ~0U, 0);

	/* EPERM too: a seccomp filter that predates close_range may answer so for any syscall it does not know. */
	if (rc < 0 && (errno == ENOSYS || errno == EPERM))
		close_fds_by_listing(keep, keep_too);
	else if (rc < 0)
		bail("closefds", errno, "");
}

static void set_hostname(const char *name)
{
	if (sethostname(name, strlen(name)) < 0)
		bail("hostname", errno, name);
}

static void enter_workdir(const char *dir)
{
	if (chdir(dir) < 0)
		bail("workdir", errno, dir);
}

/* Past anything the server sends (256 KiB of request in all, 1,024 entries of its own, a few of ours). */
#define MAX_ENV_BYTES (2 << 20)
#define MAX_ENV_ENTRIES 8192
/* Static: only the pages the environment fills are ever touched. */
static char env_bytes[MAX_ENV_BYTES];
static char *env_entries[MAX_ENV_ENTRIES + 1];

/* Reads the environment to EOF; the fd is closed unless it is also the report fd. */
static void read_env(int fd, int report_fd)
{
	size_t len = 0, start = 0, count = 0, i;
	ssize_t n;
	char more;

	while ((n = read(fd, env_bytes + len, sizeof env_bytes - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			bail("env", errno, "");
		len += (size_t)n;
		if (len < sizeof env_bytes)
			continue;
		do
			n = read(fd, &more, 1);
		while (n < 0 && errno == EINTR);
		if (n != 0)
			bail("env", n < 0 ? errno : E2BIG, "");
		break;
	}
	if (len > 0 && env_bytes[len - 1] != '\0')
		bail("env", EINVAL, "an entry without its NUL");
	for (i = 0; i < len; i++) {
		if (env_bytes[i] != '\0')
			continue;
		if (count == MAX_ENV_ENTRIES)
			bail("env", E2BIG, "");
		env_entries[count++] = env_bytes + start;
		start = i + 1;
	}
	if (fd != report_fd)
		(void)close(fd);
}

int main(int argc, char **argv)
{
	struct job_spec spec = { 0 };

	parse_args(&spec, argc, argv);
	/* From here on: no allocation, only system calls and stack or static buffers. */
	set_cloexec(status_fd);
	if (spec.report_fd >= 0)
		set_cloexec(spec.report_fd);
	for_each_option(&spec, "--cgroup", join_own_cgroup);
	read_cgroup_table();
	for_each_option(&spec, "--expect-cgroup", check_cgroup);
	/* In the job's cgroup: the pages the environment fills are the job's. */
	if (spec.env_fd >= 0)
		read_env(spec.env_fd, spec.report_fd);
	reset_oom_score();
	isolate_session();
	restore_signals();
	if (spec.stdio_pipes)
		make_stdio_pipes(spec.stdin_pipe);
	close_other_fds(status_fd, spec.report_fd);

	if (spec.namespaces) {
		enter_namespaces(&spec);
		if (spec.namespaces & CLONE_NEWNS)
			prepare_mounts(&spec);
		if (spec.namespaces & CLONE_NEWNET)
			loopback_up();
		if (spec.hostname)
			set_hostname(spec.hostname);
		if (spec.namespaces & CLONE_NEWPID)
			start_job_under_init();
	}
	become_job_user(&spec);
	if (spec.workdir)
		enter_workdir(spec.workdir);
	/* execvp searches the PATH of environ: the job's. */
	environ = env_entries;
	/*
	 * The last word before exec: EOF after it means the exec took place. A
	 * job-init killed before this line (kill -9, the OOM killer mid-setup)
	 * closes the channel without it, and its job is a start that failed.
	 */
	write_all(status_fd, "exec\n", 5);
	execvp(argv[spec.command], &argv[spec.command]);
	bail("exec", errno, argv[spec.command]);
}
