/*
 * With a PID namespace a job has three processes of job-init's making:
 *
 *   outside (the supervisor's child, pid in the host's namespace)
 *     └ init (PID 1 inside: reaps orphans, forwards signals, like tini)
 *         └ the job (PID 2, its own process group)
 *
 * The namespace's first process is its init and cannot be the job: a job's
 * shell does not reap what it did not start, and the kernel drops signals
 * to an init that has no handler for them, so `stop` could not be graceful.
 * The outside process is what the supervisor spawned and waits for: it
 * forwards the supervisor's signals to the init, which forwards them to the
 * job's process group, and it ends the way the job ended (same exit code,
 * or killed by the same signal), which the init tells it through a pipe.
 * When the job exits, the init exits too, and the kernel kills whatever is
 * left in the namespace.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "namespaces.h"
#include "report.h"

/* The signals a stop or an operator may send that the job must get. */
static const int forwarded[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2 };

/* Outside: the init's pid. In the init: minus the job's process group. 0: nowhere yet. */
static volatile pid_t forward_to;
/* In the init: where the job's wait status goes to the outside process. */
static int relay_fd = -1;
/* --report-fd: where the init tells the supervisor how the job ended; -1 for nowhere. */
static int report_fd = -1;

static void forward(int sig)
{
	int saved = errno;
	pid_t to = forward_to;

	if (to != 0)
		(void)kill(to, sig);
	errno = saved;
}

static void forwarded_set(sigset_t *set)
{
	unsigned int i;

	(void)sigemptyset(set);
	for (i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		(void)sigaddset(set, forwarded[i]);
}

/* Blocked until there is someone to forward to; the handlers are inherited by the init. */
static void hold_forwarded_signals(void)
{
	struct sigaction action;
	sigset_t set;
	unsigned int i;

	forwarded_set(&set);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		bail("signals", errno, "");
	memset(&action, 0, sizeof action);
	action.sa_handler = forward;
	action.sa_flags = SA_RESTART;
	(void)sigemptyset(&action.sa_mask);
	for (i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		if (sigaction(forwarded[i], &action, NULL) < 0)
			bail("signals", errno, "");
}

static void drop_forwarding(void)
{
	struct sigaction dfl;
	sigset_t set;
	unsigned int i;

	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	(void)sigemptyset(&dfl.sa_mask);
	for (i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		if (sigaction(forwarded[i], &dfl, NULL) < 0)
			bail("signals", errno, "");
	forwarded_set(&set);
	(void)sigprocmask(SIG_UNBLOCK, &set, NULL);
}

static void release_forwarded_signals(pid_t to)
{
	sigset_t set;

	forward_to = to;
	forwarded_set(&set);
	(void)sigprocmask(SIG_UNBLOCK, &set, NULL);
}

/*
 * Past this point only the process that will exec may hold the status fd
 * (its EOF means "exec'd") and only the job's processes the stdio pipes
 * (their EOF means "the job's output is complete").
 */
static void hand_on(void)
{
	(void)close(status_fd);
	status_fd = -1;
	(void)close(STDOUT_FILENO);
	(void)close(STDERR_FILENO);
}

/*
 * The supervisor hears how the job ended the moment the init knows it: the
 * outside process passes it on only through its own exit, which a stop's
 * SIGKILL may come before. A supervisor that went away must not turn this
 * into SIGPIPE.
 */
static void report_end(int status)
{
	char line[32];

	if (report_fd < 0)
		return;
	(void)signal(SIGPIPE, SIG_IGN);
	write_all(report_fd, line, snprintf(line, sizeof line, "exit\t%d\n", status));
}

static _Noreturn void exit_as(int status)
{
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		struct rlimit no_core = { 0, 0 };
		sigset_t only;

		/* The job dumped its own core, if it could; this one would be of job-init. */
		(void)setrlimit(RLIMIT_CORE, &no_core);
		(void)signal(sig, SIG_DFL);
		(void)sigemptyset(&only);
		(void)sigaddset(&only, sig);
		(void)sigprocmask(SIG_UNBLOCK, &only, NULL);
		(void)kill(getpid(), sig);
		_exit(128 + sig);
	}
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_FAILED);
}

/* The outside process: wait for the init, then end as the job did. */
static _Noreturn void wait_outside(pid_t init, int relay[2])
{
	int status, job_status;
	siginfo_t gone;
	sigset_t set;
	ssize_t n;

	/* Ours closed, the init's is the only writer: its death reads as EOF. */
	(void)close(relay[1]);
	/* The job's stdin is the job's: a copy kept here would hold its writer back after the job closed it. */
	(void)close(STDIN_FILENO);
	hand_on();
	/* The init's alone: it, not this process, knows the job's end first. */
	if (report_fd >= 0)
		(void)close(report_fd);
	release_forwarded_signals(init);
	/* Seen but not reaped, so no signal can be forwarded to a reused pid: stop forwarding, then reap. */
	while (waitid(P_PID, (id_t)init, &gone, WEXITED | WNOWAIT) < 0)
		if (errno != EINTR)
			_exit(EXIT_FAILED);
	forwarded_set(&set);
	(void)sigprocmask(SIG_BLOCK, &set, NULL);
	forward_to = 0;
	while (waitpid(init, &status, 0) < 0)
		if (errno != EINTR)
			_exit(EXIT_FAILED);
	do
		n = read(relay[0], &job_status, sizeof job_status);
	while (n < 0 && errno == EINTR);
	/* No report: the init was killed (a stop's SIGKILL, say) or failed before the job ran. */
	exit_as(n == (ssize_t)sizeof job_status ? job_status : status);
}

void enter_namespaces(const struct job_spec *spec)
{
	int relay[2];
	pid_t init;

	if (unshare(spec->namespaces) < 0)
		bail("namespaces", errno, "");
	if (!(spec->namespaces & CLONE_NEWPID))
		return;
	report_fd = spec->report_fd;
	hold_forwarded_signals();
	if (pipe2(relay, O_CLOEXEC) < 0)
		bail("namespaces", errno, "");
	init = fork();
	if (init < 0)
		bail("namespaces", errno, "");
	if (init > 0)
		wait_outside(init, relay);
	(void)close(relay[0]);
	relay_fd = relay[1];
	/* An outside process killed on its own (not with the whole cgroup) must not leave the job running unwatched. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		bail("namespaces", errno, "");
	/* Out of the outside process's group, which the supervisor signals: one copy of each signal. */
	if (setsid() < 0)
		bail("setsid", errno, "");
}

void start_job_under_init(void)
{
	int status;
	pid_t job = fork();

	if (job < 0)
		bail("init", errno, "");
	if (job == 0) {
		(void)setpgid(0, 0);
		/* The init's forwarding is not for the job: its signals as the supervisor left them. */
		drop_forwarding();
		return;
	}
	/* Also here: a signal forwarded before the job has run must find its group. */
	(void)setpgid(job, job);
	(void)close(STDIN_FILENO);
	hand_on();
	release_forwarded_signals(-job);
	for (;;) {
		pid_t pid = waitpid(-1, &status, 0);

		if (pid == job)
			break;
		if (pid < 0 && errno != EINTR)
			_exit(EXIT_FAILED);
	}
	report_end(status);
	write_all(relay_fd, (const char *)&status, sizeof status);
	_exit(0);
}

void loopback_up(void)
{
	struct ifreq lo;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	memset(&lo, 0, sizeof lo);
	strcpy(lo.ifr_name, "lo");
	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &lo) < 0)
		bail("network", errno, "lo");
	lo.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(fd, SIOCSIFFLAGS, &lo) < 0)
		bail("network", errno, "lo");
	(void)close(fd);
}
