/*
 * The job's identity, set last before exec. The capability bounding set is
 * what a root job's exec can grant: it keeps the capabilities a root
 * process needs for ordinary work on its own files (a container runtime's
 * usual default set, less mknod and raw sockets) and loses the rest, among
 * them CAP_SYS_ADMIN (mounts: no uncovering what job-init hid) and
 * CAP_SYS_PTRACE. A non-root job has no capabilities at all after setuid
 * (checked, not assumed); its bounding set is cut the same way.
 * PR_SET_NO_NEW_PRIVS makes set-uid binaries and file capabilities powerless
 * for the job and all it starts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "identity.h"
#include "report.h"

static int kept(int cap)
{
	switch (cap) {
	case CAP_CHOWN:
	case CAP_DAC_OVERRIDE:
	case CAP_FOWNER:
	case CAP_FSETID:
	case CAP_KILL:
	case CAP_SETGID:
	case CAP_SETUID:
	case CAP_SETPCAP:
	case CAP_SETFCAP:
	case CAP_NET_BIND_SERVICE:
	case CAP_SYS_CHROOT:
	case CAP_AUDIT_WRITE:
		return 1;
	default:
		return 0;
	}
}

static void get_capabilities(struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3])
{
	struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3 };

	if (syscall(SYS_capget, &header, data) < 0)
		bail("capabilities", errno, "");
}

/* A root exec gains inheritable ∩ file-inheritable as well as the bounding set: a server started with inheritable capabilities must not pass them on. */
static void clear_inheritable(void)
{
	struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	get_capabilities(data);
	data[0].inheritable = data[1].inheritable = 0;
	if (syscall(SYS_capset, &header, data) < 0)
		bail("capabilities", errno, "");
}

/*
 * The server may run with securebits set (systemd's SecureBits=, a
 * wrapper): with keep-caps or no-setuid-fixup, setuid to the job's uid
 * would leave it the capabilities it had as root. Only those two are
 * cleared: the others, and locks that hold them off (hardening), are
 * harmless. A lock that holds one on cannot be undone: the start fails
 * rather than run the job with it.
 */
static void clear_securebits(void)
{
	int bits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
	int wanted = bits & ~(SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP);

	if (bits < 0)
		bail("capabilities", errno, "securebits");
	if (wanted != bits && prctl(PR_SET_SECUREBITS, wanted, 0, 0, 0) < 0)
		bail("capabilities", errno, "securebits");
}

static void check_no_capabilities(void)
{
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	get_capabilities(data);
	if (data[0].permitted | data[1].permitted | data[0].effective | data[1].effective)
		bail("capabilities", EPERM, "kept after setuid");
}

static void reduce_bounding_set(void)
{
	int cap;

	/* Up to whatever this kernel knows: EINVAL past its last capability. */
	for (cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
		if (!kept(cap) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			bail("capabilities", errno, "");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		bail("capabilities", errno, "");
	clear_inheritable();
}

void become_job_user(const struct job_spec *spec)
{
	if (spec->switch_user) {
		reduce_bounding_set();
		clear_securebits();
		/*
		 * Our pipes are root's, mode 0600: the job could not open them by
		 * path (echo oops > /dev/stderr reopens fd 2 through /proc).
		 */
		if (spec->stdio_pipes && (fchown(STDOUT_FILENO, spec->uid, spec->gid) < 0 ||
					  fchown(STDERR_FILENO, spec->uid, spec->gid) < 0))
			bail("user", errno, "stdio pipes");
		/* Supplementary groups first, while we may still change them. */
		if (setgroups(1, &spec->gid) < 0)
			bail("user", errno, "setgroups");
		if (setgid(spec->gid) < 0)
			bail("user", errno, "setgid");
		if (setuid(spec->uid) < 0)
			bail("user", errno, "setuid");
		if (spec->uid != 0)
			check_no_capabilities();
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		bail("user", errno, "no_new_privs");
}
