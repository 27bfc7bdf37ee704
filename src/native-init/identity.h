#ifndef JOB_INIT_IDENTITY_H
#define JOB_INIT_IDENTITY_H
#include "spec.h"

/* Drops to the job's user (--user) with a reduced capability bounding set; no new privileges ever. */
void become_job_user(const struct job_spec *spec);

#endif
