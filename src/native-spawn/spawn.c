/*
 * spawn.node: starts job-init without forking the server.
 *
 * libuv starts a child with fork(): the kernel copies the page tables of
 * the whole multi-threaded server (hundreds of MiB mapped) before the
 * child execs, 3-4 ms a job at our sizes. glibc's posix_spawn clones with
 * CLONE_VM|CLONE_VFORK instead: the child borrows the server's memory on a
 * stack of its own until it execs, and no page table is copied. A child
 * started that way is not libuv's, so this module also watches for its
 * exit (a pidfd polled on the calling thread's loop) and reaps it; and
 * signals it through the pidfd, which names the process itself, never a
 * pid that could have been reused.
 *
 * Exports, all for one thread's loop (each supervisor thread loads its own):
 *   socketPair()  -> [a, b]          AF_UNIX stream, close-on-exec
 *   spawn(file, argv, fds, onExit) -> { pid, pidfd }
 *       fds[i] becomes the child's fd 3 + i; fds 0-2 are /dev/null; cwd /;
 *       an empty environment; nothing blocked, and every signal's default
 *       action but glibc's own two (32, 33), which its posix_spawn leaves
 *       ignored: job-init resets those (restore_signals).
 *       Throws an Error with .code (ENOENT, EACCES, E2BIG, EAGAIN, ...) and
 *       .syscall when the child could not be started or exec failed.
 *       onExit(code, signal, error) runs once, after the child is reaped:
 *       code is its exit status or null, signal the number that killed it
 *       or null; error (else null) says why the wait failed, which it
 *       cannot for a child of ours.
 *   kill(pidfd, signal) -> true, or false if it has exited (not reaped yet).
 *       Never after onExit: the pidfd is closed then, and its number may be
 *       another's (src/workers/job-init-process.ts keeps to that).
 * Needs Linux 5.3 (pidfd_open).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

/* Above the fds a spawn assigns (3, 4, ...): a source fd there could be overwritten by an earlier dup2. */
#define FIRST_FREE_FD 64
#define MAX_FDS 8

/* One child being watched: its pidfd polled until readable (it exited), then reaped. */
struct watch {
	uv_poll_t poll;
	int pidfd;
	pid_t pid;
	napi_env env;
	napi_ref on_exit;
	napi_async_context async;
	/*
	 * Held until the poll handle is closed: an environment that ends (its
	 * thread is terminated) waits for it, as Node unloads this module then,
	 * and a close callback left pending would run in unmapped code.
	 */
	napi_async_cleanup_hook_handle hook;
	int closing;
};

/* "ENOENT": glibc's name where it has one (2.32+), else libuv's (which knows fewer: not ENOEXEC). */
static const char *errno_name_of(int err)
{
#if __GLIBC_PREREQ(2, 32)
	const char *name = strerrorname_np(err);
	if (name) return name;
#endif
	return uv_err_name(-err);
}

static napi_value throw_errno(napi_env env, int err, const char *syscall_name, const char *detail)
{
	napi_value message, code, error, name;
	/* As libuv words a failed spawn: "spawn /path ENOENT". */
	const char *errno_name = errno_name_of(err);
	char text[512];
	if (detail)
		snprintf(text, sizeof text, "%s %s %s", syscall_name, detail, errno_name);
	else
		snprintf(text, sizeof text, "%s %s", syscall_name, errno_name);
	napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message);
	napi_create_string_utf8(env, errno_name, NAPI_AUTO_LENGTH, &code);
	napi_create_error(env, code, message, &error);
	napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &name);
	napi_set_named_property(env, error, "syscall", name);
	napi_value errno_value;
	napi_create_int32(env, -err, &errno_value);
	napi_set_named_property(env, error, "errno", errno_value);
	napi_throw(env, error);
	return NULL;
}

static napi_value pair_of(napi_env env, int fds[2])
{
	napi_value array, a, b;
	napi_create_array_with_length(env, 2, &array);
	napi_create_int32(env, fds[0], &a);
	napi_create_int32(env, fds[1], &b);
	napi_set_element(env, array, 0, a);
	napi_set_element(env, array, 1, b);
	return array;
}

static napi_value make_socket_pair(napi_env env, napi_callback_info info)
{
	(void)info;
	int fds[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return throw_errno(env, errno, "socketpair", NULL);
	return pair_of(env, fds);
}

static char *string_of(napi_env env, napi_value value)
{
	size_t length;
	if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) return NULL;
	char *text = malloc(length + 1);
	if (text) napi_get_value_string_utf8(env, value, text, length + 1, &length);
	return text;
}

static void free_strings(char **strings)
{
	if (!strings) return;
	for (char **s = strings; *s; s++) free(*s);
	free(strings);
}

static void on_closed(uv_handle_t *handle)
{
	struct watch *watch = handle->data;
	napi_remove_async_cleanup_hook(watch->hook);
	free(watch);
}

static void stop_watching(struct watch *watch)
{
	watch->closing = 1;
	uv_poll_stop(&watch->poll);
	if (watch->pidfd >= 0) close(watch->pidfd);
	watch->pidfd = -1;
	uv_close((uv_handle_t *)&watch->poll, on_closed);
}

/*
 * The thread's environment ends with the child still running: stop watching
 * and leave the child unreaped (the server finds it by its arguments and
 * kills it: src/supervisor/jobs/runner.ts). No N-API call but the hook's
 * removal: the reference and async context go with the environment.
 */
static void on_environment_end(napi_async_cleanup_hook_handle hook, void *data)
{
	(void)hook;
	struct watch *watch = data;
	if (!watch->closing) stop_watching(watch);
}

static void on_readable(uv_poll_t *poll, int status, int events)
{
	(void)events;
	struct watch *watch = poll->data;
	siginfo_t info;
	memset(&info, 0, sizeof info);
	/*
	 * A pidfd polls readable once its process has exited. Reaped by pid: it
	 * is our unreaped child, so the pid is still its (and P_PID needs no
	 * kernel past pidfd_open's). WNOHANG in case of a spurious wakeup.
	 */
	int waited = -1, wait_errno = -status;
	if (status == 0) {
		do
			waited = waitid(P_PID, (id_t)watch->pid, &info, WEXITED | WNOHANG);
		while (waited < 0 && errno == EINTR);
		wait_errno = errno;
		if (waited == 0 && info.si_pid == 0) return;
	}
	uv_poll_stop(poll);
	napi_env env = watch->env;
	napi_handle_scope scope;
	napi_open_handle_scope(env, &scope);
	napi_value code, signal, error, callback, resource, result;
	napi_get_null(env, &code);
	napi_get_null(env, &signal);
	napi_get_null(env, &error);
	if (waited == 0 && info.si_code == CLD_EXITED) {
		napi_create_int32(env, info.si_status, &code);
	} else if (waited == 0 && (info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED)) {
		napi_create_int32(env, info.si_status, &signal);
	} else {
		char text[128];
		if (waited == 0)
			snprintf(text, sizeof text, "waitid: unexpected si_code %d", info.si_code);
		else
			snprintf(text, sizeof text, "%s: %s", status == 0 ? "waitid" : "poll of the pidfd", errno_name_of(wait_errno));
		napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &error);
	}
	napi_get_reference_value(env, watch->on_exit, &callback);
	napi_create_object(env, &resource);
	napi_value argv[3] = { code, signal, error };
	if (napi_make_callback(env, watch->async, resource, callback, 3, argv, &result) == napi_pending_exception) {
		/* Thrown by onExit: as uncaught as any other callback's exception. */
		napi_value exception;
		napi_get_and_clear_last_exception(env, &exception);
		napi_fatal_exception(env, exception);
	}
	napi_delete_reference(env, watch->on_exit);
	napi_async_destroy(env, watch->async);
	napi_close_handle_scope(env, scope);
	stop_watching(watch);
}

/*
 * posix_spawn with what job-init may rely on (see the header); 0 or an
 * errno. Every step is checked: a job-init started without one of them
 * (holding the server's fds 0-2, or without its channels) must not run.
 */
static int spawn_with(pid_t *pid, const char *file, char **argv, const int *sources, uint32_t fd_count)
{
	posix_spawn_file_actions_t actions;
	posix_spawnattr_t attributes;
	sigset_t none, all;
	char *no_environment[] = { NULL };
	int err = posix_spawn_file_actions_init(&actions);
	if (err) return err;
	err = posix_spawnattr_init(&attributes);
	if (err) {
		posix_spawn_file_actions_destroy(&actions);
		return err;
	}
	sigemptyset(&none);
	sigfillset(&all);
	err = posix_spawnattr_setsigmask(&attributes, &none);
	if (!err) err = posix_spawnattr_setsigdefault(&attributes, &all);
	if (!err) err = posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	for (int fd = 0; fd < 3 && !err; fd++) err = posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_RDWR, 0);
	/* dup2 clears close-on-exec on the copy: these, and only these, cross the exec. */
	for (uint32_t i = 0; i < fd_count && !err; i++) err = posix_spawn_file_actions_adddup2(&actions, sources[i], 3 + (int)i);
#if __GLIBC_PREREQ(2, 29)
	/* Not the server's cwd: job-init must hold no reference to it (it changes to the job's workdir later). */
	if (!err) err = posix_spawn_file_actions_addchdir_np(&actions, "/");
#endif
	if (!err) err = posix_spawn(pid, file, &actions, &attributes, argv, no_environment);
	posix_spawn_file_actions_destroy(&actions);
	posix_spawnattr_destroy(&attributes);
	return err;
}

static napi_value spawn_child(napi_env env, napi_callback_info info)
{
	size_t argc = 4;
	napi_value args[4];
	napi_get_cb_info(env, info, &argc, args, NULL, NULL);
	if (argc < 4) {
		napi_throw_type_error(env, NULL, "spawn(file, argv, fds, onExit)");
		return NULL;
	}
	uint32_t argv_length = 0, fd_count = 0;
	napi_get_array_length(env, args[1], &argv_length);
	napi_get_array_length(env, args[2], &fd_count);
	if (fd_count > MAX_FDS) {
		napi_throw_range_error(env, NULL, "spawn: too many fds");
		return NULL;
	}

	char *file = string_of(env, args[0]);
	char **argv = calloc(argv_length + 1, sizeof *argv);
	if (!file || !argv) {
		free(file);
		free(argv);
		return throw_errno(env, ENOMEM, "spawn", NULL);
	}
	for (uint32_t i = 0; i < argv_length; i++) {
		napi_value element;
		napi_get_element(env, args[1], i, &element);
		argv[i] = string_of(env, element);
		if (!argv[i]) {
			free(file);
			free_strings(argv);
			napi_throw_type_error(env, NULL, "spawn: argv must be strings");
			return NULL;
		}
	}

	/* Copies above every target, so that no dup2 overwrites a source still to come. */
	int sources[MAX_FDS];
	uint32_t copied = 0;
	int err = 0;
	for (; copied < fd_count; copied++) {
		napi_value element;
		int32_t fd = -1;
		napi_get_element(env, args[2], copied, &element);
		napi_get_value_int32(env, element, &fd);
		sources[copied] = fcntl(fd, F_DUPFD_CLOEXEC, FIRST_FREE_FD);
		if (sources[copied] < 0) {
			err = errno;
			break;
		}
	}

	pid_t pid = -1;
	if (!err) err = spawn_with(&pid, file, argv, sources, fd_count);
	for (uint32_t i = 0; i < copied; i++) close(sources[i]);
	free_strings(argv);
	if (err) {
		napi_value result = throw_errno(env, err, "spawn", file);
		free(file);
		return result;
	}
	free(file);

	/* Our child, not reaped yet: its pid cannot have been reused. */
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		err = errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return throw_errno(env, err, "pidfd_open", NULL);
	}
	/* (A pidfd is close-on-exec from the start.) */

	struct watch *watch = calloc(1, sizeof *watch);
	uv_loop_t *loop = NULL;
	napi_value name;
	if (!watch || napi_get_uv_event_loop(env, &loop) != napi_ok || uv_poll_init(loop, &watch->poll, pidfd) != 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(pidfd);
		free(watch);
		return throw_errno(env, ENOMEM, "spawn", "(watching the child)");
	}
	watch->pidfd = pidfd;
	watch->pid = pid;
	watch->env = env;
	watch->poll.data = watch;
	napi_create_reference(env, args[3], 1, &watch->on_exit);
	napi_create_string_utf8(env, "jobworker:job-init", NAPI_AUTO_LENGTH, &name);
	napi_async_init(env, NULL, name, &watch->async);
	napi_add_async_cleanup_hook(env, on_environment_end, watch, &watch->hook);
	uv_poll_start(&watch->poll, UV_READABLE, on_readable);

	napi_value result, pid_value, pidfd_value;
	napi_create_object(env, &result);
	napi_create_int32(env, pid, &pid_value);
	napi_create_int32(env, pidfd, &pidfd_value);
	napi_set_named_property(env, result, "pid", pid_value);
	napi_set_named_property(env, result, "pidfd", pidfd_value);
	return result;
}

static napi_value kill_child(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value args[2];
	int32_t pidfd = -1, signal = 0;
	napi_get_cb_info(env, info, &argc, args, NULL, NULL);
	napi_get_value_int32(env, args[0], &pidfd);
	napi_get_value_int32(env, args[1], &signal);
	napi_value result;
	if (syscall(SYS_pidfd_send_signal, pidfd, signal, NULL, 0) != 0) {
		/* ESRCH: it exited and is not reaped yet: nothing to signal. */
		if (errno != ESRCH) return throw_errno(env, errno, "pidfd_send_signal", NULL);
		napi_get_boolean(env, false, &result);
		return result;
	}
	napi_get_boolean(env, true, &result);
	return result;
}

static napi_value init(napi_env env, napi_value exports)
{
	napi_property_descriptor properties[] = {
		{ "socketPair", NULL, make_socket_pair, NULL, NULL, NULL, napi_default, NULL },
		{ "spawn", NULL, spawn_child, NULL, NULL, NULL, napi_default, NULL },
		{ "kill", NULL, kill_child, NULL, NULL, NULL, napi_default, NULL },
	};
	napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
	return exports;
}

NAPI_MODULE_INIT()
{
	return init(env, exports);
}
