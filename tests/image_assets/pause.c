/*
 * The pod sandbox's PID 1 for the node tier's local pause image (tests/images.py).
 *
 * Like Kubernetes' pause: hold the pod's namespaces open by sleeping until SIGTERM or SIGINT (exit 0),
 * reaping any child re-parented to it meanwhile (it is the init of the pod's PID namespace when the
 * namespace is shared). PID 1 gets no default signal actions, so the handlers are what make it stoppable.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        puts("pause 3.10 (airflow-migration-webhook test image)");
        return 0;
    }
    if (getpid() != 1) {
        fputs("Warning: pause should be the first process\n", stderr);
    }
    struct sigaction on_stop = {.sa_handler = stop};
    struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    sigemptyset(&on_stop.sa_mask);
    sigemptyset(&on_child.sa_mask);
    if (sigaction(SIGINT, &on_stop, NULL) || sigaction(SIGTERM, &on_stop, NULL) ||
        sigaction(SIGCHLD, &on_child, NULL)) {
        perror("sigaction");
        return 1;
    }
    for (;;) {
        pause();
    }
}
