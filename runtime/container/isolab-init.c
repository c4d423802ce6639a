/*
 * isolab-init: the container's pid 1 (built statically on the host by runtime/container/init.py and
 * exec'd by the runtime from a sealed memfd, so nothing of the runtime's Python process survives).
 *
 *   isolab-init READY_FD [CMD ARG...]
 *
 * Makes itself non-dumpable (the workload can neither ptrace it nor read its memory, environ or fds),
 * forks CMD (searched in PATH), forwards signals to it, reaps every orphan, and exits with CMD's
 * status (128+N when CMD died of signal N). Without CMD it pauses, reaping what `exec` leaves behind,
 * until SIGTERM or SIGINT. READY_FD is the runtime's start pipe: CMD's exec closes it (close-on-exec);
 * if CMD cannot be exec'd, a line "E<reason>" goes down it first. No other fd is kept open.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT};

static void report(int fd, const char *what, const char *cmd, int err)
{
    char line[512];
    int n;
    if (err == ENOENT)
        n = snprintf(line, sizeof line, "Ecommand not found in the image: %s\n", cmd);
    else
        n = snprintf(line, sizeof line, "E%s(%s): %s\n", what, cmd, strerror(err));
    if (n > 0 && write(fd, line, (size_t)n) < 0)
        _exit(127);
}

static pid_t start_workload(int ready, char **argv, const sigset_t *mask)
{
    pid_t pid = fork();
    if (pid < 0) {
        report(ready, "fork", argv[0], errno);
        _exit(126);
    }
    if (pid > 0)
        return pid;
    /* the workload: back to the default signal mask and OOM score, then exec */
    sigprocmask(SIG_UNBLOCK, mask, NULL);
    int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (oom >= 0) {
        if (write(oom, "0", 1) < 0) { /* best effort */ }
        close(oom);
    }
    execvp(argv[0], argv);
    int err = errno;
    report(ready, "execve", argv[0], err);
    _exit(err == ENOENT ? 127 : 126);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: isolab-init READY_FD [CMD ARG...]\n");
        return 125;
    }
    int ready = atoi(argv[1]);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (fcntl(ready, F_SETFD, FD_CLOEXEC) < 0)
        return 125;

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        sigaddset(&mask, forwarded[i]);
    sigprocmask(SIG_BLOCK, &mask, NULL);

    pid_t workload = argc > 2 ? start_workload(ready, argv + 2, &mask) : 0;
    close(ready);

    for (;;) {
        siginfo_t info;
        if (sigwaitinfo(&mask, &info) < 0)
            continue;
        if (info.si_signo == SIGCHLD) {
            int status;
            pid_t pid;
            while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                if (pid == workload)
                    _exit(WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status));
            }
        } else if (workload > 0) {
            kill(workload, info.si_signo);
        } else if (info.si_signo == SIGTERM || info.si_signo == SIGINT) {
            _exit(0);
        }
    }
}
