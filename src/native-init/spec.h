/* What job-init was asked to do: the single-valued options parsed, the repeatable ones read from argv where they are used. */
#ifndef JOB_INIT_SPEC_H
#define JOB_INIT_SPEC_H

#include <sys/types.h>

struct job_spec {
	/* argv[1 .. command - 1] are (option, value) pairs; argv[command] is the command. */
	char **argv;
	int command;
	/* --stdio pipes: give the command real pipes on fds 1 and 2. */
	int stdio_pipes;
	/* --stdin pipe (needs --stdio pipes): a pipe on fd 0 too, its write end announced. */
	int stdin_pipe;
	/* CLONE_NEW* flags from --namespaces; 0 runs the job in ours. */
	int namespaces;
	const char *hostname;
	/* tmpfs size= for the private /tmp and /dev/shm, in bytes. */
	const char *tmp_size;
	const char *rootfs;
	const char *workdir;
	/* --env-fd: where the command's environment is read from; -1 for none. */
	int env_fd;
	/* --report-fd: where the init of a PID namespace reports how the job ended; -1 for none. */
	int report_fd;
	int switch_user;
	uid_t uid;
	gid_t gid;
};

/* Calls fn with the value of every occurrence of a repeatable option. */
void for_each_option(const struct job_spec *spec, const char *name, void (*fn)(const char *value));

#endif
