#ifndef JOB_INIT_NAMESPACES_H
#define JOB_INIT_NAMESPACES_H
#include "spec.h"

/*
 * Creates the job's namespaces. Without a PID namespace it returns in the
 * same process. With one it forks: this process stays outside, waits, and
 * exits as the job did; the call returns in the child, PID 1 of the new
 * namespace, which must then call start_job_under_init().
 */
void enter_namespaces(const struct job_spec *spec);

/* In PID 1 of the job's namespace: forks the job and returns in it; PID 1 stays as its init. */
void start_job_under_init(void);

/* Brings up lo, the only interface of a new network namespace. */
void loopback_up(void);

#endif
