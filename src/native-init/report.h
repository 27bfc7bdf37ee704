/* How job-init reports a failed step: one status record, one stderr line, exit. */
#ifndef JOB_INIT_REPORT_H
#define JOB_INIT_REPORT_H

#define EXIT_USAGE 125
#define EXIT_FAILED 127

/* Where status records go; -1 once this process has handed reporting on. */
extern int status_fd;

void write_all(int fd, const char *buf, int len);
_Noreturn void report(const char *step, int err, const char *detail, const char *message, int code);
_Noreturn void bail(const char *step, int err, const char *detail);

#endif
