/*
 * The job's filesystem, set up in its new mount namespace before it runs:
 *
 *   - nothing propagates back to the host (everything made private first);
 *   - for a root job, the host's tree (or its rootfs) read-only;
 *   - /proc for its PID namespace, so it sees its own processes only, with
 *     the host-wide knobs read-only and the kernel's secrets covered;
 *   - /tmp, /var/tmp and /dev/shm: empty tmpfs of its own, capped in size
 *     (the pages count against the job's memory limit too: job-init has
 *     joined its cgroup before mounting them);
 *   - /sys mounted afresh read-only (it shows the job's network namespace),
 *     with the host's cgroup tree bound in read-only, so a job can read its
 *     limits but no root job can raise them or leave its group;
 *   - /dev: a read-only tmpfs with null, zero, full, random, urandom and tty
 *     only (and /dev/shm);
 *   - every --hide path (the server's data dir and its key's directory) covered by
 *     an empty read-only tmpfs, or /dev/null for a file;
 *   - with --rootfs, /proc, /tmp, /sys and /dev inside that directory,
 *     which then becomes the root (pivot_root); the host's tree is
 *     detached, so nothing needs hiding (the server refuses a rootfs that
 *     holds or lies in a hidden path).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include "mounts.h"
#include "report.h"

#define HARMLESS (MS_NOSUID | MS_NODEV | MS_NOEXEC)
/* Where /sys is assembled before it is moved over the host's (inside the new /tmp). */
#define SYS_STAGING "/tmp/.jobworker-sys"

static void mount_at(const char *source, const char *target, const char *type,
		     unsigned long flags, const char *data)
{
	if (mount(source, target, type, flags, data) < 0)
		bail("mount", errno, target);
}

/* root is "" (the host's tree) or the --rootfs directory. */
static void under(char *out, const char *root, const char *path)
{
	if (snprintf(out, PATH_MAX, "%s%s", root, path) >= PATH_MAX)
		bail("mount", ENAMETOOLONG, path);
}

static void make_dir(const char *path, mode_t mode)
{
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		bail("mount", errno, path);
}

static void mount_tmpfs(const char *target, const char *mode, const char *size, unsigned long flags)
{
	char options[128];

	(void)snprintf(options, sizeof options, "mode=%s,size=%s", mode, size);
	mount_at("tmpfs", target, "tmpfs", flags, options);
}

/* Every mount at and below path (a bind carries the mounts below it along). */
static void set_attributes(const char *path, unsigned long long attributes)
{
	struct mount_attr attr = { .attr_set = attributes };

	if (mount_setattr(AT_FDCWD, path, AT_RECURSIVE, &attr, sizeof attr) < 0)
		bail("mount", errno, path);
}

static void bind_readonly(const char *source, const char *target)
{
	mount_at(source, target, NULL, MS_BIND | MS_REC, NULL);
	set_attributes(target, MOUNT_ATTR_RDONLY);
}

/* A fresh sysfs, read-only, with the host's cgroup hierarchies read-only inside. */
static void mount_sys(const char *target)
{
	char cgroup[PATH_MAX];

	make_dir(target, 0755);
	mount_at("sysfs", target, "sysfs", HARMLESS | MS_RDONLY, NULL);
	under(cgroup, target, "/fs/cgroup");
	/* v1 has one mount per hierarchy under it: all of them, read-only. */
	bind_readonly("/sys/fs/cgroup", cgroup);
}

static void make_node(const char *dev, const char *name, unsigned int major, unsigned int minor)
{
	char path[PATH_MAX];

	under(path, dev, name);
	if (mknod(path, S_IFCHR | 0666, makedev(major, minor)) < 0)
		bail("mount", errno, path);
}

static void make_link(const char *dev, const char *name, const char *to)
{
	char path[PATH_MAX];

	under(path, dev, name);
	if (symlink(to, path) < 0)
		bail("mount", errno, path);
}

/* The few device nodes programs expect, made rather than bound: the host's /dev may already be covered. */
static void mount_dev(const char *root, const char *tmp_size)
{
	char dev[PATH_MAX], shm[PATH_MAX];

	under(dev, root, "/dev");
	make_dir(dev, 0755);
	mount_tmpfs(dev, "755", "64k", MS_NOSUID | MS_NOEXEC);
	make_node(dev, "/null", 1, 3);
	make_node(dev, "/zero", 1, 5);
	make_node(dev, "/full", 1, 7);
	make_node(dev, "/random", 1, 8);
	make_node(dev, "/urandom", 1, 9);
	make_node(dev, "/tty", 5, 0);
	make_link(dev, "/fd", "/proc/self/fd");
	make_link(dev, "/stdin", "/proc/self/fd/0");
	make_link(dev, "/stdout", "/proc/self/fd/1");
	make_link(dev, "/stderr", "/proc/self/fd/2");
	under(shm, dev, "/shm");
	make_dir(shm, 01777);
	/* Root's to write otherwise; /dev/shm, mounted on it next, stays writable. */
	set_attributes(dev, MOUNT_ATTR_RDONLY);
	mount_tmpfs(shm, "1777", tmp_size, HARMLESS);
}

/* Covers path with something empty: a read-only tmpfs for a directory, /dev/null for anything else. */
static void mask(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		/* Not there (or already out of sight, under the new /tmp): nothing to cover. */
		if (errno == ENOENT)
			return;
		bail("hide", errno, path);
	}
	if (S_ISDIR(st.st_mode))
		mount_tmpfs(path, "000", "4k", HARMLESS | MS_RDONLY);
	else
		mount_at("/dev/null", path, NULL, MS_BIND, NULL);
}

/*
 * What /proc lets root change or read of the whole host, as container
 * runtimes close it: kernel settings (core_pattern, modprobe: a program the
 * kernel runs as root), sysrq, the kernel's memory and keys.
 */
static const char *const proc_readonly[] = { "/sys", "/sysrq-trigger", "/irq", "/bus", "/fs" };
static const char *const proc_masked[] = { "/kcore", "/keys", "/timer_list", "/sched_debug", "/latency_stats", "/acpi", "/scsi" };

static void protect_proc(const char *proc)
{
	char path[PATH_MAX];
	unsigned int i;

	for (i = 0; i < sizeof proc_readonly / sizeof proc_readonly[0]; i++) {
		under(path, proc, proc_readonly[i]);
		if (access(path, F_OK) == 0)
			bind_readonly(path, path);
	}
	for (i = 0; i < sizeof proc_masked / sizeof proc_masked[0]; i++) {
		under(path, proc, proc_masked[i]);
		mask(path);
	}
}

static void mount_proc_tmp(const char *root, const struct job_spec *spec)
{
	char path[PATH_MAX];
	struct stat st;

	under(path, root, "/proc");
	if (spec->namespaces & CLONE_NEWPID || spec->rootfs) {
		make_dir(path, 0555);
		mount_at("proc", path, "proc", HARMLESS, NULL);
	}
	protect_proc(path);
	under(path, root, "/tmp");
	make_dir(path, 01777);
	mount_tmpfs(path, "1777", spec->tmp_size, MS_NOSUID | MS_NODEV);
	/*
	 * The other world-writable directory, shared between jobs and kept
	 * across them, where there is one. The host's may be a link to where
	 * it really is, which is what gets covered; in a rootfs a link (as some
	 * images make to /tmp) would lead out of it before the pivot, so only a
	 * directory reached through directories is.
	 */
	if (!spec->rootfs) {
		struct stat tmp;

		/* A link to /tmp leads into the job's new /tmp: covered already. */
		if (stat("/var/tmp", &st) == 0 && S_ISDIR(st.st_mode) &&
		    !(stat("/tmp", &tmp) == 0 && tmp.st_dev == st.st_dev && tmp.st_ino == st.st_ino))
			mount_tmpfs("/var/tmp", "1777", spec->tmp_size, MS_NOSUID | MS_NODEV);
		return;
	}
	under(path, root, "/var");
	if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode))
		return;
	under(path, root, "/var/tmp");
	if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
		mount_tmpfs(path, "1777", spec->tmp_size, MS_NOSUID | MS_NODEV);
}

/*
 * Made before a root job's rootfs turns read-only. A symbolic link there
 * would take a mount elsewhere (an absolute one into the host's tree, as
 * the root has not changed yet) and leave the job's /tmp a directory of the
 * rootfs, shared with every job that uses it: only directories will do.
 */
static void make_mount_points(const char *rootfs)
{
	static const struct { const char *name; mode_t mode; } points[] = {
		{ "/proc", 0555 }, { "/sys", 0755 }, { "/dev", 0755 }, { "/tmp", 01777 },
	};
	char path[PATH_MAX];
	unsigned int i;
	struct stat st;

	for (i = 0; i < sizeof points / sizeof points[0]; i++) {
		under(path, rootfs, points[i].name);
		make_dir(path, points[i].mode);
		if (lstat(path, &st) < 0)
			bail("rootfs", errno, path);
		if (!S_ISDIR(st.st_mode))
			bail("rootfs", ENOTDIR, path);
	}
}

static void enter_rootfs(const char *rootfs)
{
	/*
	 * pivot_root(".", ".") stacks the old root on top of the new one; the
	 * detach then takes the old root away, so the host's tree is gone
	 * from this namespace altogether (no directory to climb out through).
	 */
	if (chdir(rootfs) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
	    umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
		bail("rootfs", errno, rootfs);
}

void prepare_mounts(const struct job_spec *spec)
{
	const char *root_dir = spec->rootfs ? spec->rootfs : "";
	/*
	 * Root passes every permission check, and group 0 owns much of the
	 * host: the host's files, a rootfs among them, are only to be read.
	 */
	int root = spec->switch_user && (spec->uid == 0 || spec->gid == 0);
	char sys[PATH_MAX];
	mode_t saved_umask = umask(0);

	mount_at(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	if (spec->rootfs) {
		/* pivot_root needs the new root to be a mount point; no device or set-uid file in it may count. */
		mount_at(spec->rootfs, spec->rootfs, NULL, MS_BIND | MS_REC, NULL);
		make_mount_points(spec->rootfs);
		set_attributes(spec->rootfs, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID | (root ? MOUNT_ATTR_RDONLY : 0));
	} else if (root) {
		set_attributes("/", MOUNT_ATTR_RDONLY);
	}
	mount_proc_tmp(root_dir, spec);
	if (spec->rootfs) {
		under(sys, root_dir, "/sys");
		mount_sys(sys);
	} else {
		/* The host's cgroup tree must still be in sight when it is bound in, so the new /sys is built aside. */
		mount_sys(SYS_STAGING);
		mount_at(SYS_STAGING, "/sys", NULL, MS_MOVE, NULL);
		if (rmdir(SYS_STAGING) < 0)
			bail("mount", errno, SYS_STAGING);
	}
	mount_dev(root_dir, spec->tmp_size);
	if (spec->rootfs)
		enter_rootfs(spec->rootfs);
	else
		for_each_option(spec, "--hide", mask);
	(void)umask(saved_umask);
}
