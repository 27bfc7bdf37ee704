#ifndef JOB_INIT_MOUNTS_H
#define JOB_INIT_MOUNTS_H
#include "spec.h"

/* The job's own view of the filesystem, in the mount namespace job-init made. */
void prepare_mounts(const struct job_spec *spec);

#endif
